"""``modelbuild cache``: verify and collect garbage in the local cache; push, pull and verify
the remote one. Each action holds the build lock, as a build does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelbuild.errors import Unavailable, UserError


def cmd_cache(args: argparse.Namespace) -> int:
    from modelbuild.manifest.project import load_project
    from modelbuild.store.lock import build_lock
    from modelbuild.store.objects import ObjectStore
    from modelbuild.store.state import StateDB

    project = load_project()
    store = ObjectStore(project.cache_dir)
    with build_lock(project.cache_dir, lambda m: print(m, file=sys.stderr)):
        db = StateDB(project.cache_dir / "state.sqlite")
        try:
            if args.cache_command == "verify":
                return _cache_verify(args, project, store, db)
            if args.cache_command == "push":
                return _cache_push(args, project, store, db)
            if args.cache_command == "pull":
                return _cache_pull(args, project, store, db)
            return _cache_gc(args, store, db)
        finally:
            db.close()


def _cache_verify(args: argparse.Namespace, project: Any, store: Any, db: Any) -> int:
    from modelbuild.report.reasons import human_size as human
    from modelbuild.store.admin import verify_cache

    if args.remote is not None:
        return _cache_verify_remote(args, project, store)
    report = verify_cache(store, db)
    for digest in report.evicted:
        print(f"corrupt: {digest} (evicted; the next build rebuilds it)")
    print(
        f"checked {report.checked} entries: {len(report.evicted)} corrupt, {human(report.freed)} evicted; "
        f"{human(report.scratch_freed)} of interrupted scratch removed"
    )
    return 1 if report.evicted else 0


def _cache_gc(args: argparse.Namespace, store: Any, db: Any) -> int:
    from modelbuild.cli import commands
    from modelbuild.report.reasons import human_size as human
    from modelbuild.store.admin import collect_garbage

    _project, _models, graph = commands._graph(args, memo=db)
    wanted = {(graph.nodes[n]["node"].model, graph.nodes[n]["node"].stage) for n in graph.nodes}
    reachable = {output for model, stage, _key, output in db.stage_records() if (model, stage) in wanted}
    # The snapshots of the current manifests' files (weights, code, data) stay too.
    snapshots = {db.recorded_digest(Path(path)) for n in graph.nodes for path in graph.nodes[n]["node"].files.values()}
    reachable |= {digest for digest in snapshots if digest is not None}
    report = collect_garbage(store, db, reachable, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {len(report.evicted)} of {report.checked} entries, {human(report.freed)}"
        + ("" if args.dry_run else f" (and {human(report.scratch_freed)} of interrupted scratch)")
    )
    return 0


def _required_remote(args: argparse.Namespace, project: Any, flag: str | None = None) -> Any:
    from modelbuild.cli import commands

    config = commands._remote_config(args, project, flag)
    if config is None:
        raise UserError('no remote cache: give --remote URL, set MODELBUILD_REMOTE, or add [remote] url = "..." to modelbuild.toml')
    return config


def _opened(config: Any) -> Any:
    """The remote, or the reason it cannot be used as a command's error (exit 1)."""
    from modelbuild.remote.cache import RemoteCache, RemoteTrouble

    try:
        return RemoteCache(config)
    except RemoteTrouble as exc:
        raise Unavailable(str(exc)) from None


def _cache_push(args: argparse.Namespace, project: Any, store: Any, db: Any) -> int:
    """Upload the current manifests' entries: the explicit push (whatever ``push`` says)."""
    from modelbuild.cli import commands
    from modelbuild.cli.terminal import Terminal
    from modelbuild.remote.cache import RemoteTrouble
    from modelbuild.remote.sync import push_entries
    from modelbuild.report.reasons import human_size as human

    config = _required_remote(args, project)
    cache = _opened(config)
    _project, _models, graph = commands._graph(args, memo=db)
    wanted = {(graph.nodes[n]["node"].model, graph.nodes[n]["node"].stage) for n in graph.nodes}
    entries = []
    for model, stage, key, output in db.stage_records():
        action = db.action(key)
        if (model, stage) in wanted and action is not None and action.output == output:
            entries.append((key, output, action.info))
    terminal = Terminal()
    try:
        with terminal.counter(len(entries), f"pushing to {config.display}") as advance:
            report = push_entries(cache, store, entries, advance)
    except RemoteTrouble as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"pushed {report.records} entries to {config.display}: {report.objects} objects uploaded ({human(report.bytes)}), "
        f"the rest were there already" + (f"; {len(report.missing)} not in the local cache (build first)" if report.missing else "")
    )
    unbuilt = len(wanted) - len(entries)
    if unbuilt:
        print(f"{unbuilt} stage(s) of these manifests have no cache entry here (not built, skipped or failed): nothing to push for them")
    return 0


def _cache_pull(args: argparse.Namespace, project: Any, store: Any, db: Any) -> int:
    """Fetch the current manifests' entries (``--model`` narrows): a build that runs nothing."""
    import dataclasses

    from modelbuild.cli import commands, fastpath
    from modelbuild.cli.terminal import Terminal
    from modelbuild.graph.executor import BuildOptions, Executor
    from modelbuild.graph.planner import ordered_nodes
    from modelbuild.remote.session import RemoteSession
    from modelbuild.report import Status
    from modelbuild.report.reasons import human_size as human
    from modelbuild.store.paths import claim_out_dir

    config = dataclasses.replace(_required_remote(args, project), push=False)
    _opened(config)
    fastpath.forget(project.cache_dir)
    _project, _models, graph = commands._graph(args, memo=db)
    nodes = ordered_nodes(graph)
    claim_out_dir(project.out_dir)
    terminal = Terminal()
    session = RemoteSession(config, store)
    executor = Executor(nodes, db, store, project.out_dir, BuildOptions(jobs=1, fetch_only=True), terminal.on_event, remote=session)
    terminal.start_progress(len(nodes), project.out_dir)
    try:
        report = executor.run()
    finally:
        terminal.stop_progress()
    fetched = report.by_status(Status.REMOTE)
    missing = report.by_status(Status.WOULD_RUN)
    here = report.by_status(Status.CACHED)
    traffic = report.remote or {}
    print(
        f"pulled {len(fetched)} stage(s) from {config.display} ({human(traffic.get('fetched_bytes', 0))}); "
        f"{len(here)} already here; {len(missing)} not on the remote (a build makes them)"
    )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 1 if traffic.get("trouble") else 0


def _cache_verify_remote(args: argparse.Namespace, project: Any, store: Any) -> int:
    from modelbuild.cli.terminal import Terminal
    from modelbuild.remote.cache import RemoteTrouble
    from modelbuild.remote.sync import verify_remote

    config = _required_remote(args, project, args.remote or None)
    cache = _opened(config)
    terminal = Terminal()
    try:
        objects = cache.object_digests()
        with terminal.counter(len(objects), f"re-hashing {config.display}") as advance:
            check = verify_remote(cache, store.scratch(), config.push, advance, objects)
    except RemoteTrouble as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for digest in check.corrupt:
        print(f"corrupt on the remote: {digest}" + (" (removed; the next pushing build uploads it again)" if check.removed else ""))
    advice = "" if check.removed or not check.corrupt else " (builds ignore them; a machine with push = true can remove them with this command)"
    print(f"checked {check.checked} remote objects: {len(check.corrupt)} corrupt{advice}")
    return 1 if check.corrupt else 0
