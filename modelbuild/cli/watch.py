"""``modelbuild watch [PATHS]``: build, then build again whenever something it read changes.

What to watch is what the last successful build read, as the no-op fast path recorded it
(manifests, code, weights, settings, artifacts, cache entries), plus every file under PATHS,
so a new manifest or a fixed weights file after a failed round is seen too. Polling stat
signatures, like the fast path: no watcher library, the same notion of "changed" as the
build itself. A change starts a round only after the files have been quiet for ``--settle``
seconds: a training run writing a checkpoint is not read half-written (and if it were, the
snapshot's own check would refuse a file that changes while it is read).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

Signatures = dict[str, str]


def add_parser(sub: Any, with_paths: Callable[..., Any], with_remote: Callable[..., Any], with_cold: Callable[..., Any]) -> None:
    watch = with_cold(with_remote(with_paths(sub.add_parser("watch", help="build, then rebuild what a change makes stale, until Ctrl-C"))))
    watch.add_argument("-j", "--jobs", type=int, default=None, help="stages run at once, of one model or several (processes)")
    watch.add_argument("--no-bench", action="store_true", help="leave out the benchmark stages")
    watch.add_argument("--keep-going", action="store_true", help="build the other models when one fails")
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the files (default 0.5)")
    watch.add_argument("--settle", type=float, default=1.0, help="seconds files must stay unchanged before a round starts (default 1)")
    watch.add_argument("--rounds", type=int, default=0, help=argparse.SUPPRESS)  # stop after N rounds (tests, scripts); 0: never


def cmd_watch(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """``run`` is the command line's own build entry (fast path, errors, exit codes)."""
    from modelbuild.cli.fastpath import CHANGED_DURING_THE_BUILD, changed_during
    from modelbuild.manifest.project import load_project

    if args.interval <= 0 or args.settle < 0:
        from modelbuild.errors import UserError

        raise UserError(f"--interval must be > 0 and --settle >= 0, got {args.interval} and {args.settle}")
    build = argparse.Namespace(**{**vars(args), "command": "build", "force": False, "dry_run": False, "locked": False, "scheduler": None})
    project = load_project()
    remembered: set[str] = set()
    rounds = 0
    try:
        while True:
            started = time.strftime("%H:%M:%S")
            started_ns = time.time_ns()
            code = run(build)
            if code == 130:  # Ctrl-C during a round: the build said "interrupted"; watching ends too
                print("stopped watching", flush=True)
                return code
            rounds += 1
            remembered |= _recorded(project.cache_dir)
            baseline = _signatures(_watched(remembered, args.paths))
            # A file written while the round ran (a checkpoint after the build read the last
            # one) is a change still to build, not the state to wait on.
            for path in changed_during(map(Path, baseline), project, started_ns):
                baseline[str(path)] = CHANGED_DURING_THE_BUILD
            outcome = "ok" if code == 0 else f"exit {code}"
            print(f"[{started}] round {rounds}: {outcome}; watching {len(baseline)} files (Ctrl-C stops)", flush=True)
            if args.rounds and rounds >= args.rounds:
                return code
            changed = _wait_for_change(baseline, functools.partial(_watched, set(remembered), args.paths), args.interval, args.settle)
            shown = ", ".join(_display(p) for p in changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            print(f"changed: {shown}", flush=True)
    except KeyboardInterrupt:
        print("stopped watching", flush=True)
        return 0


def _recorded(cache_dir: Path) -> set[str]:
    """What the last successful build read and wrote (empty when the last round failed)."""
    try:
        return set(json.loads((cache_dir / "noop.json").read_text(encoding="utf-8")).get("watched", {}))
    except (OSError, ValueError, AttributeError):
        return set()


def _watched(remembered: set[str], paths: list[str]) -> set[str]:
    found = set(remembered)
    for given in paths:
        path = Path(given).resolve()
        found.add(str(path))
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
                found.add(root)
                found.update(os.path.join(root, name) for name in names)
    return found


def _signatures(paths: set[str]) -> Signatures:
    from modelbuild.cli.fastpath import signature

    return {path: signature(Path(path)) for path in paths}


def _changes(before: Signatures, now: Signatures) -> list[str]:
    return sorted(p for p in before.keys() | now.keys() if before.get(p, "missing") != now.get(p, "missing"))


def _wait_for_change(baseline: Signatures, paths: Callable[[], set[str]], interval: float, settle: float) -> list[str]:
    """Block until something differs from ``baseline`` and then stays put for ``settle`` seconds."""
    while True:
        time.sleep(interval)
        now = _signatures(paths())
        changed = _changes(baseline, now)
        if not changed:
            continue
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle:
            time.sleep(min(interval, settle) or interval)
            later = _signatures(paths())
            if later != now:
                changed = sorted(set(changed) | set(_changes(now, later)))
                now, quiet_since = later, time.monotonic()
        return changed


def _display(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
