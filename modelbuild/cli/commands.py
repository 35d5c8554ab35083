"""The ``modelbuild`` command line. Heavy imports stay out: converters load in workers only."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from modelbuild import __version__
from modelbuild.cli import cache_commands, watch, worker_commands
from modelbuild.errors import ManifestError, UserError


def _positive(text: str) -> int:
    """``-j``: at least one stage at a time (0 or fewer would build nothing, or wait forever)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


@functools.lru_cache(maxsize=1)
def parser() -> argparse.ArgumentParser:
    """The command line's parser, built once per process (a warm server builds it before it
    forks, so a handed-over build starts past it)."""
    return _parser()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelbuild", description="Declarative, cached, reproducible builds of PyTorch models for Core ML.")
    parser.add_argument("--version", action="version", version=f"modelbuild {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_paths(p: argparse.ArgumentParser, runs: bool = True) -> argparse.ArgumentParser:
        p.add_argument("paths", nargs="*", default=["manifests"], help="manifest files or folders (default: manifests)")
        p.add_argument("--model", action="append", default=[], help="only this model (repeatable)")
        p.add_argument("--target", action="append", default=[], help="only this target (repeatable), e.g. coreml")
        if runs:  # -v changes what a build prints; commands that run nothing have nothing more to show
            p.add_argument("-v", "--verbose", action="store_true", help="every stage in the summary (cached ones too), and tracebacks for build failures")
        return p

    def with_remote(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--remote", default=None, metavar="URL", help="the shared cache (s3://, gs://, file://); default: MODELBUILD_REMOTE, then [remote] url")
        return p

    def with_cold(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--cold", action="store_true", help="run stages in fresh processes, not in forks of the warm worker server")
        return p

    build = with_cold(with_remote(with_paths(sub.add_parser("build", help="build what is stale, then print a summary"))))
    build.add_argument("-j", "--jobs", type=_positive, default=None, help="stages run at once, of one model or several (processes)")
    build.add_argument(
        "--scheduler", default=None, metavar="ADDRESS", help="run heavy stages on Dask: tcp://HOST:8786 (a running scheduler) or local:N (N processes here)"
    )
    build.add_argument("--force", action="store_true", help="re-run every selected stage")
    build.add_argument("--keep-going", action="store_true", help="build the other models when one fails")
    build.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    build.add_argument("--no-bench", action="store_true", help="leave out the benchmark stages")
    build.add_argument("--locked", action="store_true", help="fail when a stage's key or output differs from modelbuild.lock (and leave the lock as it is)")
    release_help = "build, then write reproducible bundles: artifacts, SHA256SUMS, provenance.json"
    release = with_cold(with_remote(with_paths(sub.add_parser("release", help=release_help))))
    release.add_argument("--out", default="dist", help="where the bundles go (default: dist)")
    release.add_argument("-j", "--jobs", type=_positive, default=None, help="stages run in parallel")
    release.add_argument("--no-bench", action="store_true", help="leave out the benchmark stages")
    release.add_argument("--locked", action="store_true", help="as for build: prove the bundle's bytes match modelbuild.lock")
    cache = sub.add_parser("cache", help="the build cache: verify its integrity, collect garbage")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    verify = cache_sub.add_parser("verify", help="re-hash every entry; evict corrupt ones (exit 1 if any were found)")
    verify.add_argument(
        "--remote", nargs="?", const="", default=None, metavar="URL", help="re-hash the remote cache's objects instead (the configured remote, or URL)"
    )
    for action, words in (
        ("push", "upload the current manifests' cache entries to the remote (objects, then records)"),
        ("pull", "fetch the current manifests' entries from the remote into the cache and build/"),
    ):
        sync = with_remote(with_paths(cache_sub.add_parser(action, help=words), runs=False))
        sync.add_argument("--no-bench", action="store_true", help="leave out the benchmark stages")
    gc = with_paths(cache_sub.add_parser("gc", help="remove entries no current manifest reaches"), runs=False)
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    bench = with_cold(with_remote(with_paths(sub.add_parser("bench", help="build what is needed, run the benchmarks, print the latency table"))))
    bench.add_argument("-j", "--jobs", type=int, default=None, help="stages run in parallel before the benchmarks")
    bench.add_argument("--force", action="store_true", help="re-run the benchmarks (and every other selected stage)")
    bench.add_argument("--keep-going", action="store_true", help="benchmark the other models when one fails")
    with_paths(sub.add_parser("plan", help="what would run and why, runs nothing"))
    with_paths(sub.add_parser("check", help="validate manifests only (never imports torch)"), runs=False)
    graph = with_paths(sub.add_parser("graph", help="print the stage graph"), runs=False)
    graph.add_argument("--dot", action="store_true", help="Graphviz dot instead of text")
    graph.add_argument("--no-bench", action="store_true", help="leave out the benchmark stages")
    predict = sub.add_parser("predict", help="run an .mlpackage (ML program or neural network) on your inputs, on any OS")
    predict.add_argument("package", help="path to an .mlpackage, e.g. build/segmenter/segmenter.mlpackage")
    predict.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="an input: an image (.png/.jpg) or an array (.npy); repeatable; all=FILE.npz gives every input",
    )
    predict.add_argument("--out", default=None, help="where to save the outputs (.npz; default: <package name>.outputs.npz in the current folder)")
    explain = sub.add_parser("explain", help="where a built Core ML program departs from float32: the first op, its module, the way out")
    explain.add_argument("name", metavar="MODEL", help="a model with a Core ML target, built at least once")
    explain.add_argument("paths", nargs="*", default=["manifests"], help="manifest files or folders (default: manifests)")
    explain.add_argument("--shape", default=None, help="only the reference samples of this shape (default, min, max, ...)")
    sub.add_parser("schema", help="print the manifest JSON Schema")
    worker_commands.add_parser(sub)
    watch.add_parser(sub, with_paths, with_remote, with_cold)
    init = sub.add_parser("init", help="write a commented starter manifest (from your factory's model when given)")
    init.add_argument("factory", nargs="?", default=None, metavar="FACTORY", help="'module:callable' returning your nn.Module, e.g. models.mynet:build")
    init.add_argument("--out", default=None, help="the manifest to write (default: manifests/<name>.yaml)")
    init.add_argument("--name", default=None, help="the model's name (default: the factory's module name, or model)")
    init.add_argument("--args", default=None, help="the factory's keyword arguments as JSON, e.g. '{\"num_classes\": 10}'")
    init.add_argument("--force", action="store_true", help="replace the file when it exists")
    clean = sub.add_parser("clean", help="remove build/ (and the cache with --cache)")
    clean.add_argument("--cache", action="store_true", help="also remove the cache folder")
    return parser


def main(argv: Sequence[str] | None = None, parsed: argparse.Namespace | None = None) -> int:
    """The command line; ``parsed``: ``argv`` parsed already (a warm server's fork checks what
    it was handed before it runs it)."""
    args = parsed if parsed is not None else parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        # ``modelbuild graph | head``: the reader went away; that is not an error.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    """One command (``watch`` runs its rounds through this too, in its own long-lived process)."""
    import sqlite3

    try:
        from modelbuild.cli.fastpath import try_noop

        unchanged = try_noop(args)  # before the graph machinery is even imported
        if unchanged is not None:
            print(unchanged)
            return 0
        return COMMANDS[args.command](args)
    except ManifestError as exc:
        _print_problems(exc)
        if args.command in ("build", "bench", "release"):  # check, plan and graph build nothing anyway
            print("nothing was built (--keep-going builds the valid models).", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # the reader went away (``| head``): main says nothing
    except (OSError, sqlite3.Error) as exc:
        # The machine's problem, not a bug: a full disk, a folder without permission. One line
        # that names the path; the traceback only with -v.
        if getattr(args, "verbose", False):
            import traceback

            traceback.print_exc()
        print(f"error: {_environment_problem(exc)}", file=sys.stderr)
        return 1


def _environment_problem(exc: BaseException) -> str:
    import errno

    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        advice = {
            errno.ENOSPC: "; free some space and build again: nothing half-written is ever reused",
            errno.EDQUOT: "; free some space and build again",
            errno.EACCES: "; check the folder's permissions",
            errno.EROFS: "; the file system is read-only",
        }.get(exc.errno or 0, "")
        return f"{exc.strerror or exc}{where}{advice}"
    return f"the state database failed: {exc}; if the disk is full, free some space and build again"


def _print_problems(exc: ManifestError) -> None:
    for line in exc.problems:
        print(f"error: {line}", file=sys.stderr)
    count = len(exc.problems)
    print(f"{count} manifest problem{'s' if count != 1 else ''} found.", file=sys.stderr)


def _load(args: argparse.Namespace, memo: Any = None) -> tuple[Any, list[Any]]:
    from modelbuild.manifest.load import find_manifest_files, load_models
    from modelbuild.manifest.project import check_manifests_outside, load_project

    project = load_project()
    paths = [Path(p) if Path(p).is_absolute() else Path.cwd() / p for p in args.paths]
    files = find_manifest_files(paths)
    if not files:
        raise UserError(f"no manifests (*.yaml, *.yml, *.toml) under {', '.join(args.paths)}")
    check_manifests_outside(project, files)
    try:
        return project, load_models(files, project.root, project.defaults, memo)
    except ManifestError as exc:
        if not getattr(args, "keep_going", False) or not exc.valid:
            raise
        _print_problems(exc)
        args.manifest_problems = exc.problems
        return project, exc.valid


def _graph(args: argparse.Namespace, memo: Any = None) -> tuple[Any, list[Any], Any]:
    from modelbuild.graph.planner import plan_graph

    project, models = _load(args, memo)
    selected = args.model
    if getattr(args, "manifest_problems", None):  # --keep-going: a selected invalid model was reported already
        selected = [name for name in selected if name in {m.name for m in models}]
        if args.model and not selected:
            raise UserError("none of the selected models is valid (see above)")
    return project, models, plan_graph(models, selected, args.target or None, bench=not getattr(args, "no_bench", False))


def cmd_build(args: argparse.Namespace, dry_run: bool = False) -> int:
    import dataclasses
    import time

    from modelbuild.cli.terminal import Terminal
    from modelbuild.graph.executor import BuildOptions, Executor, process_pool
    from modelbuild.graph.planner import ordered_nodes
    from modelbuild.manifest.project import load_project
    from modelbuild.store.lock import build_lock
    from modelbuild.store.objects import ObjectStore
    from modelbuild.store.state import StateDB

    started_ns = time.time_ns()  # before any input is read (modelbuild.cli.fastpath.remember)
    project = load_project()
    dry_run = dry_run or getattr(args, "dry_run", False)
    terminal = Terminal()
    # ``plan`` of a cache this user may not write still works: no lock, a private copy of the state.
    read_only = dry_run and not _writable(project.cache_dir)
    with build_lock(project.cache_dir, terminal.error, create=not read_only):
        db = StateDB(project.cache_dir / "state.sqlite", read_only=read_only and (project.cache_dir / "state.sqlite").is_file())
        if not dry_run:
            from modelbuild.cli import fastpath

            fastpath.forget(project.cache_dir)  # this build may change what the record says
        # The warm server starts (or is checked) now, so its imports overlap the planning.
        warm = None if dry_run or getattr(args, "scheduler", None) else worker_commands.warm_pool(args, project)
        try:
            project, models, graph = _graph(args, memo=db)
            nodes = ordered_nodes(graph)
            if not dry_run:
                from modelbuild.store.paths import claim_out_dir

                claim_out_dir(project.out_dir)
            options = BuildOptions(
                jobs=getattr(args, "jobs", None) or project.jobs,
                force=getattr(args, "force", False),
                keep_going=getattr(args, "keep_going", False),
                dry_run=dry_run,
            )
            store = ObjectStore(project.cache_dir)
            remote = None if dry_run else _remote_session(args, project, store)
            pool_factory: Any = process_pool if warm is None else (lambda _workers: warm)
            if getattr(args, "scheduler", None) and not dry_run:
                cluster = _cluster(args, project, store)
                pool_factory = lambda _workers: cluster  # noqa: E731 - one cluster for the build, shut down by the executor
                options = dataclasses.replace(options, jobs=getattr(args, "jobs", None) or cluster.workers)
            executor = Executor(nodes, db, store, project.out_dir, options, terminal.on_event, pool_factory=pool_factory, remote=remote)
            if not dry_run:
                terminal.start_progress(len(nodes), project.out_dir)
            try:
                report = executor.run()
                if db.repaired:
                    report.warnings.insert(0, db.repaired)
                if warm is not None and warm.trouble:
                    report.warnings.append(f"warm workers: {warm.trouble}; stages ran in fresh processes instead (as with --cold)")
                report.variant_of = {m.name: m.data["variant_of"] for m in models if "variant_of" in m.data}
            finally:
                terminal.stop_progress()
            # Written while the lock is held: a second build never interleaves its report,
            # lock file or bundle with this one's, and `clean` never cuts them from under.
            lock_problems = [] if dry_run else _write_results(args, project, report, terminal)
            released = _release(args, project, models, report, lock_problems) if not dry_run else []
            remote_trouble = bool(report.remote and report.remote["trouble"])  # the next build tries the remote again
            if not dry_run and not report.exit_code and not lock_problems and not remote_trouble and not getattr(args, "manifest_problems", None):
                from modelbuild.cli import afterwards, fastpath

                record = functools.partial(fastpath.remember, args, project, models, nodes, report, ObjectStore(project.cache_dir).path, started_ns)
                if afterwards.holding():  # a handed-over build: its client gets the answer first
                    report_signature = fastpath.signature(project.out_dir / "report.json")
                    afterwards.later(functools.partial(fastpath.remember_if_current, record, project, report_signature))
                else:
                    record()
        finally:
            db.close()
    title = "modelbuild plan" if dry_run else f"modelbuild {getattr(args, 'command', 'build')}"
    quiet = terminal.nothing_to_do(report, title) if not args.verbose and getattr(args, "command", "") != "bench" else None
    if quiet is not None:
        terminal.print(quiet)
    else:
        for view in (
            terminal.summary(report, title=title, verbose=args.verbose),
            None if dry_run else terminal.verify_table(report),
            None if dry_run else terminal.size_table(report),
        ):
            if view is not None:
                terminal.print(view)
    if getattr(args, "command", "") == "bench" or (not dry_run and quiet is None and report.by_role("measure")):
        terminal.print(terminal.bench_table(report))
        written = [project.out_dir / "bench.md"] if report.by_role("measure") else []
        terminal.print("written: " + ", ".join(_display(p) for p in written + [project.out_dir / "report.json"]))
    if quiet is None:
        terminal.print(terminal.totals(report))
    if warm is not None and warm.replaced:
        terminal.print(f"warm workers: a new server replaced one that was stale ({warm.replaced})")
    for warning in report.warnings:
        terminal.error(f"warning: {warning}")
    for line in terminal.failures(report, args.verbose):
        terminal.error(line)
    for problem in lock_problems:
        terminal.error(f"error: --locked: {problem}")
    if getattr(args, "manifest_problems", None):
        terminal.error(f"{len(args.manifest_problems)} manifest problem(s): those models were not built (see above).")
        return 2
    if dry_run:
        return 0
    for line in released:
        terminal.print(line)
    return report.exit_code or (1 if lock_problems else 0)


def _remote_config(args: argparse.Namespace, project: Any, flag: str | None = None) -> Any:
    from modelbuild.remote.config import resolve

    where = str(project.settings_file) if project.settings_file else "settings"
    return resolve(project.remote, flag if flag is not None else getattr(args, "remote", None), project.root, where=where)


def _remote_session(args: argparse.Namespace, project: Any, store: Any) -> Any:
    """The build's remote cache session, or None when no remote is named anywhere."""
    config = _remote_config(args, project)
    if config is None:
        return None
    from modelbuild.remote.session import RemoteSession

    return RemoteSession(config, store)


def _cluster(args: argparse.Namespace, project: Any, store: Any) -> Any:
    from modelbuild.cluster.pool import ClusterPool, parse_scheduler

    return ClusterPool(parse_scheduler(args.scheduler), _remote_config(args, project), store)


def _write_results(args: argparse.Namespace, project: Any, report: Any, terminal: Any) -> list[str]:
    """report.json, modelbuild.lock (or its check with --locked) and bench.md; the lock's problems."""
    from modelbuild.release.lockfile import check_lock, load_if_present, read_lock, write_lock
    from modelbuild.report.bench import bench_rows, write_markdown
    from modelbuild.report.document import write_report

    lock_problems: list[str] = []
    write_report(report, project.out_dir / "report.json")
    lock_path = project.root / "modelbuild.lock"
    if getattr(args, "locked", False):
        checked = check_lock(report, read_lock(lock_path))
        lock_problems = checked.problems
        if checked.by_tolerance:
            terminal.print(
                f"--locked: {len(checked.by_tolerance)} stage(s) matched modelbuild.lock by tolerance, not byte for byte "
                f"(float results that depend on the CPU's kernels): {', '.join(checked.by_tolerance)}"
            )
    elif report.exit_code == 0 and not getattr(args, "manifest_problems", None):
        # A failed build leaves the lock alone: it records builds that worked.
        previous, problem = load_if_present(lock_path)
        if problem:
            report.warnings.append(f"{problem} (written anew from this build)")
        write_lock(lock_path, report, previous, partial=bool(args.target))
    if bench_rows(report) or report.by_role("measure"):
        write_markdown(report, project.out_dir / "bench.md")
    return lock_problems


def _release(args: argparse.Namespace, project: Any, models: list[Any], report: Any, lock_problems: list[str]) -> list[str]:
    """Write the release bundles of a build that worked; the lines that say where they went."""
    if getattr(args, "command", "") != "release" or report.exit_code or lock_problems or getattr(args, "manifest_problems", None):
        return []
    from modelbuild.release.bundle import write_bundle
    from modelbuild.store.objects import ObjectStore

    out = Path(args.out) if Path(args.out).is_absolute() else Path.cwd() / args.out
    lines = []
    for model in models:
        if any(r.model == model.name for r in report.results):
            folder = write_bundle(model, report, ObjectStore(project.cache_dir), out)
            lines.append(f"released {model.name} {model.data['version']}: {_display(folder)}")
    return lines


def _writable(folder: Path) -> bool:
    import os

    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cmd_plan(args: argparse.Namespace) -> int:
    return cmd_build(args, dry_run=True)


def cmd_check(args: argparse.Namespace) -> int:
    project, models = _load(args)
    for model in models:
        print(f"ok: {model.display}{' ' + model.prefix if model.prefix else ''}: {model.name} ({', '.join(sorted(model.data['targets']))})")
    print(f"{len(models)} model{'s' if len(models) != 1 else ''} valid")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from modelbuild.graph.planner import ordered_nodes

    _project, _models, graph = _graph(args)
    if args.dot:
        print("digraph modelbuild {\n  rankdir=LR;")
        by_model: dict[str, list[Any]] = {}
        for node in ordered_nodes(graph):
            by_model.setdefault(node.model, []).append(node)
        for model, nodes in by_model.items():  # one box per model: a project's graph stays readable
            print(f'  subgraph "cluster_{model}" {{\n    label="{model}";')
            for node in nodes:
                print(f'    "{node.id}" [label="{node.stage}"];')
            print("  }")
        for a, b in sorted(graph.edges):
            print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    for node in ordered_nodes(graph):
        after = ", ".join(d.split(":", 1)[1] for d in node.deps) or "-"
        files = ", ".join(sorted(node.files)) or "-"
        print(f"{node.id}  after: {after}  reads: {files}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from modelbuild.coreml.predict import predict

    lines, saved = predict(Path(args.package), args.input, Path(args.out) if args.out else None)
    for line in lines:
        print(line)
    print(f"outputs saved to {_display(saved)}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Run the model's last built Core ML program on its reference samples, as it is and as its
    float32 shadow, and print where they part (``mil.explain``)."""
    import torch

    from modelbuild.checks.cases import model_feeds, read_cases
    from modelbuild.manifest.project import load_project
    from modelbuild.mil.explain import compare_modules, locate, torch_module_outputs
    from modelbuild.store.objects import ObjectStore
    from modelbuild.store.state import StateDB

    args.model, args.target = [args.name], []
    _project, models, _plan = _graph(args)
    model = next(m for m in models if m.name == args.name)
    if "coreml" not in model.data["targets"]:
        raise UserError(f"explain: {args.name} has no Core ML target (targets: {', '.join(sorted(model.data['targets']))})")
    if model.data["targets"]["coreml"]["format"] != "mlprogram":
        raise UserError(f"explain: {args.name} is a neuralnetwork package; the locator reads ML programs (format: mlprogram)")
    project = load_project()
    state = project.cache_dir / "state.sqlite"
    if not state.is_file():
        raise UserError(f"explain: nothing is built yet; run `modelbuild build --model {args.name}` first")
    db = StateDB(state, read_only=True)
    try:
        program, reference = db.last_stage(args.name, "coreml.optimize"), db.last_stage(args.name, "reference")
    finally:
        db.close()
    if program is None or reference is None:
        raise UserError(f"explain: {args.name} has no built Core ML program yet; run `modelbuild build --model {args.name}` first")
    store = ObjectStore(project.cache_dir)
    package = store.path(program[2]) / "model.mlpackage"
    if not package.is_dir() or not store.path(reference[2]).is_dir():
        raise UserError(f"explain: the cached build of {args.name} is gone (cache gc or clean?); run `modelbuild build --model {args.name}` first")
    cases, _names = read_cases(store.path(reference[2]))
    cases = [c for c in cases if args.shape is None or c.shape == args.shape]
    if not cases:
        raise UserError(f"explain: no reference sample of shape {args.shape!r}")
    inputs = model.data["inputs"]
    eager: Any = None
    for case in cases:
        tensors = model_feeds(inputs, case.raw)
        feeds = dict(zip([i["name"] for i in inputs], tensors))
        feeds.update({i["name"]: case.raw[i["name"]] for i in inputs if i["kind"] == "image"})  # pixels: the package preprocesses them
        explanation = locate(package, feeds)
        print(f"{args.name}, {case.shape} sample {case.id}:")
        for line in explanation.lines():
            print(f"  {line}")
        if explanation.first is not None:
            return 0  # the first sample that departs says it; the others would repeat it
        # float16 explains nothing here: compare the package with the PyTorch modules themselves.
        eager = eager or _eager_model(args.name, _plan, db_path=state, store=store)
        outputs = torch_module_outputs(eager, [torch.from_numpy(t) for t in tensors])
        rtol = 1e-2 if explanation.float16 else 1e-3  # a float16 program carries float16's rounding everywhere
        for line in compare_modules(package, feeds, outputs, rtol=rtol):
            print(f"  {line}")
    return 0


def _eager_model(name: str, plan: Any, db_path: Path, store: Any) -> Any:
    """The model as PyTorch runs it, built from its last ``source`` output (the snapshot of its
    code and weights the package was converted from)."""
    from modelbuild.errors import Location
    from modelbuild.store.state import StateDB
    from modelbuild.torch_side.eager import build_prepared

    db = StateDB(db_path, read_only=True)
    try:
        source = db.last_stage(name, "source")
    finally:
        db.close()
    if source is None:
        raise UserError(f"explain: {name} has no built source yet; run `modelbuild build --model {name}` first")
    context = plan.nodes[f"{name}:capture"]["node"].context
    prepared, _model, _notes = build_prepared(context, store.path(source[2]), context["wrapper"], lambda field: Location(context["manifest"], None, field))
    return prepared.eval()


def cmd_schema(args: argparse.Namespace) -> int:
    from modelbuild.manifest.schema import schema

    print(json.dumps(schema(), indent=2))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from modelbuild.cli.init import run_init

    for line in run_init(args.factory, args.out, args.name, args.args, args.force):
        print(line)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Removes only what modelbuild wrote: out_dir when it carries modelbuild's marker, the
    cache's own entries, under the build lock so a running build is never cut from under."""
    from modelbuild.manifest.project import load_project
    from modelbuild.store.lock import build_lock
    from modelbuild.store.paths import OUT_MARKER, remove

    project = load_project()
    with build_lock(project.cache_dir, lambda m: print(m, file=sys.stderr), create=args.cache or project.cache_dir.is_dir()):
        if project.out_dir.exists():
            if not (project.out_dir / OUT_MARKER).is_file() and any(project.out_dir.iterdir()):
                raise UserError(
                    f"clean: {project.out_dir} has no {OUT_MARKER} marker, so modelbuild did not make it; "
                    "it is left alone (check out_dir in the project settings, or remove it yourself)"
                )
            remove(project.out_dir)
            print(f"removed {project.out_dir}")
        if args.cache and project.cache_dir.exists():
            # Only the entries modelbuild makes (the build lock has checked the folder's tag, so
            # it is modelbuild's cache; anything a person put in it since stays).
            for child in project.cache_dir.iterdir():
                if child.name in ("objects", "tmp") or child.name.startswith("state.sqlite"):
                    remove(child)
            print(f"removed the cache entries in {project.cache_dir}")
    return 0


COMMANDS = {
    "build": cmd_build,
    "bench": cmd_build,
    "release": cmd_build,
    "cache": cache_commands.cmd_cache,
    "plan": cmd_plan,
    "check": cmd_check,
    "graph": cmd_graph,
    "predict": cmd_predict,
    "explain": cmd_explain,
    "schema": cmd_schema,
    "init": cmd_init,
    "clean": cmd_clean,
    "workers": worker_commands.cmd_workers,
    "watch": lambda args: watch.cmd_watch(args, _run),
}
