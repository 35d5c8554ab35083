"""``modelbuild workers status|stop``, and the warm pool a build uses."""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_parser(sub: Any) -> None:
    workers = sub.add_parser("workers", help="the warm worker server: status, stop")
    actions = workers.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("status", help="whether this project's server runs, since when, what it loaded, when it stops")
    actions.add_parser("stop", help="stop this project's server now (stages it runs are killed)")


def warm_pool(args: argparse.Namespace, project: Any) -> Any:
    """The build's warm pool, already starting; None when this build runs cold."""
    from modelbuild.workers.config import resolve

    settings = resolve(project.workers, getattr(args, "cold", False))
    if not settings.warm:
        return None
    from modelbuild.workers.client import WarmPool
    from modelbuild.workers.place import place_for

    return WarmPool(place_for(project.cache_dir), settings.idle, getattr(args, "jobs", None) or project.jobs).prepare()


def cmd_workers(args: argparse.Namespace) -> int:
    from modelbuild.manifest.project import load_project
    from modelbuild.workers.client import read_status, stop_server
    from modelbuild.workers.config import resolve
    from modelbuild.workers.place import place_for

    project = load_project()
    place = place_for(project.cache_dir)
    if args.action == "stop":
        stopped = stop_server(place)
        if stopped is None:
            print("no warm worker server was running")
        else:
            print(f"stopped the warm worker server (pid {stopped['pid']}, {stopped['served']} stages served)")
        return 0
    settings = resolve(project.workers, cold_flag=False)
    status = read_status(place)
    if status is None:
        mode = "builds start one on first use" if settings.warm else f"builds run cold: {settings.why_cold}"
        print(f"no warm worker server for this project ({mode})")
        return 0
    for line in describe(status, place):
        print(line)
    return 0


def describe(status: dict[str, Any], place: Any) -> list[str]:
    from modelbuild.workers.identity import differences, identity

    now = time.time()
    idle_left = status["idle_timeout"] - (now - status["last_used"])
    idle = f"stops after {_duration(max(0.0, idle_left))} more without work (idle timeout {_duration(status['idle_timeout'])})"
    lines = [
        f"warm worker server: pid {status['pid']}, {status['state']}, up {_duration(now - status['started'])}, {status.get('memory', 0) / 1e9:.1f} GB resident",
        f"  served {status['served']} stage(s) and {status.get('builds', 0)} handed-over build(s), {status['running']} running; "
        + (idle if not status["running"] else "busy"),
    ]
    warm = {name: seconds for name, seconds in status.get("warm_up", {}).items() if seconds >= 0.5 or seconds < 0}
    if warm:
        lines.append("  loaded: " + ", ".join(f"{name} {seconds:.1f}s" if seconds >= 0 else f"{name} (failed)" for name, seconds in warm.items()))
    changed = differences(status.get("identity", {}), identity())
    if changed:
        lines.append("  stale: the next build replaces it (" + "; ".join(changed) + ")")
    lines.append(f"  log: {place.log}")
    return lines


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
