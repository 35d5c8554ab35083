"""The no-op fast path: ninja's way of deciding that nothing changed.

A successful build records the stat signature (size, mtime, inode, ctime) of everything it
read or wrote: the manifests and the folders they were found in, the project settings and the
folders between here and the project root, every file a stage reads (code, weights, data,
plugins, class labels), every artifact under ``build/`` and every cache entry behind them,
the folders on ``sys.path`` (installing or upgrading a package changes them), modelbuild's
own source files (an editable checkout changes without a new version), the interpreter,
modelbuild's version and the environment variables that change a result. The next ``build``
with the same request compares those signatures before it imports the graph machinery,
rich, jsonschema or any converter; when all of them match, it prints one line and stops.

Anything else (a signature that differs, another request, a record that is missing or
unreadable, ``--force``/``--locked``/``-v``) takes the full path, which decides stage by stage
as before. A build deletes the record before it changes anything and writes it only when it
ended with nothing failed, so an interrupted build can never leave a record that lies.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

RECORD = "noop.json"
CHANGED_DURING_THE_BUILD = "changed during the build"  # a recorded signature no path ever has
FORMAT = 2  # 2: modelbuild's own files are watched too
ENVIRONMENT = ("PYTHONPATH", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def request(args: Any) -> dict[str, Any] | None:
    """What was asked, in a form two invocations can compare; None when the fast path must
    not answer it."""
    if getattr(args, "command", "") != "build":
        return None
    if any(getattr(args, flag, False) for flag in ("force", "dry_run", "locked", "verbose")):
        return None
    return {
        "paths": [str(Path(p) if Path(p).is_absolute() else Path.cwd() / p) for p in args.paths],
        "model": sorted(args.model),
        "target": sorted(args.target),
        "no_bench": bool(getattr(args, "no_bench", False)),
        "remote": getattr(args, "remote", None),
        "scheduler": getattr(args, "scheduler", None),
    }


def try_noop(args: Any) -> str | None:
    """The one line to print when nothing changed since the recorded build, else None."""
    wanted = request(args)
    if wanted is None or os.environ.get("MODELBUILD_FASTPATH", "1") == "0":  # 0: always the full path (to measure it)
        return None
    import fcntl

    from modelbuild.manifest.project import load_project
    from modelbuild.store.lock import open_lock

    try:
        project = load_project()
        with open_lock(project.cache_dir / "lock", create=False) as lock:
            # A build running now may be changing what the record says: let it finish first.
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                return _answer(project, wanted)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except Exception:  # noqa: BLE001 - no usable record, a busy lock: the full path decides
        return None


def _answer(project: Any, wanted: dict[str, Any]) -> str | None:
    path = project.cache_dir / RECORD
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("format") != FORMAT or record.get("request") != wanted or record.get("context") != _context():
        return None
    watched = record.get("watched", {})
    for name, recorded in watched.items():
        if signature(Path(name)) != recorded:
            return None
    if "report" in record:
        # report.json says what this run did: every stage up to date, as the full path writes it.
        report = project.out_dir / "report.json"
        _replace(report, record.pop("report"))
        watched[str(report)] = signature(report)
        _replace(path, json.dumps(record))
    return f"modelbuild build: nothing to do, {record['stages']} stages up to date (no file changed since the last build)"


def forget(cache_dir: Path) -> None:
    """Called before a build changes anything: from here on the record would not be true."""
    try:
        (cache_dir / RECORD).unlink()
    except FileNotFoundError:
        pass


def remember(args: Any, project: Any, models: Iterable[Any], nodes: Iterable[Any], report: Any, store_path: Any, started_ns: int) -> None:
    """Record what this (successful) build read and wrote, for the next no-op, with the
    report.json that no-op must leave (every stage up to date). ``started_ns``: when the build
    began (``time.time_ns()``), before it read anything: an input changed since is recorded
    as CHANGED_DURING_THE_BUILD, which no later look matches (see ``changed_during``)."""
    wanted = request(args)
    if wanted is None:
        return
    models, nodes = list(models), list(nodes)
    files: set[Path] = set()
    folders: set[Path] = set()
    for model in models:
        files.add(model.manifest)
        folders.update({model.folder, model.root})
        classes = model.data.get("metadata", {}).get("classes_file")
        if classes:
            files.add(model.resolve_path(classes))
    for node in nodes:
        for declared in map(Path, node.files.values()):
            files.add(declared)
            if declared.is_dir():  # source.code folders: their content counts, file by file
                for root, dirs, names in os.walk(declared):
                    folders.update(Path(root) / d for d in dirs)
                    files.update(Path(root) / n for n in names)
    if project.settings_file is not None:
        files.add(project.settings_file)
    cwd = Path.cwd().resolve()
    folders.update([cwd, *(p for p in cwd.parents if project.root == p or project.root in p.parents)])
    for given in wanted["paths"]:
        path = Path(given)
        if path.is_dir():
            folders.update(Path(root) for root, dirs, _ in os.walk(path) if "__pycache__" not in root)
        files.add(path)
    folders.update(Path(p) for p in sys.path if p and Path(p).is_dir())
    # modelbuild's own code (an editable checkout changes under the same version): a changed
    # default or stage must reach the full path, which decides with the new code.
    for root, dirs, names in os.walk(Path(__file__).resolve().parents[1]):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        files.update(Path(root) / n for n in names if n.endswith((".py", ".json")))
    built = {r.model for r in report.results}
    trees = [project.out_dir / name for name in built] + [store_path(r.output) for r in report.results if r.output]
    files.update([project.out_dir / "report.json", project.out_dir / "bench.md", project.root / "modelbuild.lock"])
    for tree in trees:
        folders.add(Path(tree))
        for root, dirs, names in os.walk(tree):
            folders.update(Path(root) / d for d in dirs)
            files.update(Path(root) / n for n in names)
    watched = {str(p): signature(p) for p in sorted(files | folders)}
    # The signatures are read now, at the end. An input written after the build read it (a
    # training job's next checkpoint) would be recorded as the state that was built, and the
    # next build would answer "nothing to do" with artifacts of the old bytes. Such an entry is
    # recorded as a signature no file has: the next build takes the full path and sees the
    # change (git's "racily clean" entries), and `watch` still knows to watch the file.
    for path in changed_during(files | folders, project, started_ns):
        watched[str(path)] = CHANGED_DURING_THE_BUILD
    record: dict[str, Any] = {"format": FORMAT, "request": wanted, "context": _context(), "stages": len(report.results), "watched": watched}
    if any(r.status != "cached" for r in report.results):
        record["report"] = _noop_report(report)
    _replace(project.cache_dir / RECORD, json.dumps(record))


def remember_if_current(record: Callable[[], None], project: Any, written: str) -> None:
    """``record`` (a bound ``remember``) run later, after the client of a handed-over build has
    its answer: under the build lock again, and only if report.json still has the signature
    ``written`` it had when the build ended (another build since would have written it anew,
    and this record would describe that build's files with this build's report)."""
    from modelbuild.store.lock import build_lock

    report = project.out_dir / "report.json"
    with build_lock(project.cache_dir, lambda _words: None):
        if signature(report) == written:
            record()


def _noop_report(report: Any) -> str:
    """report.json as the full path would write it for a build with nothing to do."""
    import dataclasses

    from modelbuild.report.document import report_text
    from modelbuild.report.reasons import Reason, Why
    from modelbuild.report.results import Status

    def settled(result: Any) -> Any:
        if result.status not in (Status.BUILT, Status.REMOTE):
            return result
        return dataclasses.replace(result, status=Status.CACHED, reasons=[Reason(Why.UP_TO_DATE)], seconds=0.0)

    quiet = dataclasses.replace(report, results=[settled(r) for r in report.results], seconds=0.0, warnings=[])
    return report_text(quiet)


def _replace(path: Path, text: str) -> None:
    from modelbuild.store.paths import replace_file

    replace_file(path, text)


def _context() -> dict[str, Any]:
    from modelbuild import __version__

    return {
        "modelbuild": __version__,
        "package": str(Path(__file__).resolve().parents[1]),
        "python": [sys.executable, sys.version],
        "environment": {name: os.environ.get(name) for name in sorted(ENVIRONMENT) + _own_variables()},
    }


def _own_variables() -> list[str]:
    """modelbuild's variables, but not those that only pick the path to take: this one, and
    the one a warm server's fork runs a handed-over build with (a record it wrote must answer
    the same build run here, and the other way round)."""
    return sorted(k for k in os.environ if k.startswith("MODELBUILD_") and k not in ("MODELBUILD_FASTPATH", "MODELBUILD_DELEGATED"))


def changed_during(paths: Iterable[Path], project: Any, started_ns: int) -> list[Path]:
    """The inputs among ``paths`` that changed since ``started_ns``. Not the build's own
    outputs (build/, the cache, modelbuild.lock), nor the folders from here up, which its
    writes change."""
    cwd = Path.cwd().resolve()
    outputs = [project.out_dir, project.cache_dir]
    mine = {project.root / "modelbuild.lock", cwd, *cwd.parents}
    return [p for p in paths if p not in mine and not _inside(p, outputs) and changed_since(p, started_ns)]


def changed_since(path: Path, started_ns: int) -> bool:
    """Whether ``path`` changed (its ctime, which no tool can set back) at or after
    ``started_ns``, allowing for the file system's clock: the kernel stamps files from a
    coarse clock that lags ``time.time_ns()`` by a tick, and some file systems keep whole
    seconds (a timestamp without nanoseconds is taken to be one of those)."""
    try:
        changed = os.stat(path).st_ctime_ns
    except OSError:
        return False  # missing: recorded as "missing", so its appearance is a change
    margin = 2_000_000_000 if changed % 1_000_000_000 == 0 else 50_000_000
    return changed >= started_ns - margin


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def signature(path: Path) -> str:
    """A path's stat signature ("missing" when it is gone): what "changed" means to a no-op and to ``watch``."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_mode}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"
