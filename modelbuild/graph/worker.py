"""Running one stage, in a worker process: logs to a file, output into the store.

Everything torch, coremltools and the user's code print goes to
``build/<model>/logs/<stage>.log`` (file descriptors included, since converters print from C
and tqdm), so the terminal shows only modelbuild's progress and summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterator

from modelbuild.errors import StageFailure, UserError, first_line
from modelbuild.graph.node import StageNode
from modelbuild.graph.outcome import Outcome
from modelbuild.stages import STAGES
from modelbuild.stages.base import StageJob
from modelbuild.store.objects import ObjectStore
from modelbuild.store.paths import open_new
from modelbuild.usercode.tree import ModuleMark


def run_stage(node_json: dict[str, Any], inputs: dict[str, str], files: dict[str, str], cache_dir: str, log_path: str, redirect: bool = True) -> Outcome:
    """Run one stage; its outcome crosses a process boundary back to the executor.

    ``redirect=False`` is for light stages run in the coordinating process: they are our own
    code and print nothing, and redirecting the coordinator's descriptors would swallow the
    progress display.
    """
    node = StageNode.from_json(node_json)
    store = ObjectStore(Path(cache_dir))
    scratch = store.scratch()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with (
        open_new(Path(log_path)) as log_file,
        _captured_output(log_file) if redirect else contextlib.nullcontext(),
        _forgetting_user_modules(store.root, node.context.get("root")) as mark,
    ):
        logger = _logger(node, log_file)
        job = StageJob(node=node, inputs={k: Path(v) for k, v in inputs.items()}, out=scratch, log=logger, files={k: Path(v) for k, v in files.items()})
        threads = _torch_threads()
        try:
            STAGES.get(node.stage)().run(job)
        except UserError as exc:
            logger.error("%s", traceback.format_exc())
            _discard(scratch)
            return Outcome.failed("user", str(exc), time.perf_counter() - started, traceback.format_exc())
        except StageFailure as exc:
            logger.error("%s", traceback.format_exc())
            _discard(scratch)
            # A failed verification still has its figures: the summary and report show them.
            return Outcome.failed("stage", str(exc), time.perf_counter() - started, traceback.format_exc(), job.notes, job.info)
        except Exception as exc:  # noqa: BLE001 - reported as this stage's failure, with its traceback
            logger.error("%s", traceback.format_exc())
            _discard(scratch)
            return Outcome.failed("stage", f"{type(exc).__name__}: {first_line(exc)}", time.perf_counter() - started, traceback.format_exc())
        finally:
            _restore_threads(threads)
            _discard(job.imports_dir)
        job.notes += _unkeyed_imports(mark.added(), node.context.get("root"), store.root)
        for note in job.notes:
            logger.info("note: %s", note)
    try:
        digest = store.put(scratch)
    except OSError as exc:  # a full disk, a cache made read-only: this stage's failure, not the build's crash
        _discard(scratch)
        return Outcome.failed("stage", f"cannot store the output in the cache: {exc}", time.perf_counter() - started, traceback.format_exc())
    return Outcome(time.perf_counter() - started, output=digest, notes=job.notes, info=job.info)


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _restore_threads(threads: int | None) -> None:
    """Benchmarks pin torch to their thread count; the next stage in this worker gets the
    process default back (a worker runs many stages)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    wanted = threads if threads is not None else max(1, os.cpu_count() or 1)  # imported by this stage: torch's default
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def _logger(node: StageNode, log_file: Any) -> logging.Logger:
    logger = logging.getLogger(f"modelbuild.stage.{node.id}")
    logger.handlers[:] = [logging.StreamHandler(log_file)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def _captured_output(log_file: Any) -> Iterator[None]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    sys.stdout = sys.stderr = log_file
    root = logging.getLogger()
    handler = logging.StreamHandler(log_file)
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log_file.write(
                warnings.formatwarning(message, category, filename, lineno, line)
            )
            yield
    finally:
        root.removeHandler(handler)
        log_file.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@contextlib.contextmanager
def _forgetting_user_modules(cache_root: Path, project_root: str | None) -> Iterator[ModuleMark]:
    """Whatever user module a stage imported (from snapshots in the store, or, unkeyed, from
    the project's folders) is forgotten when it ends: a worker runs stages of many models,
    and two projects may each have their own ``models/tiny.py``."""
    from modelbuild.usercode.tree import forget_modules_under, invalidate_finders_under

    path = list(sys.path)
    mark = ModuleMark()
    registered = _torch_op_registrations()
    bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # the user's modules live in the store: no __pycache__ written into an entry
    user_folders = [cache_root, *([Path(project_root)] if project_root else [])]
    invalidate_finders_under(user_folders)
    try:
        yield mark
    finally:
        sys.dont_write_bytecode = bytecode
        sys.path[:] = path
        added = mark.close()
        forget_modules_under([cache_root], added)
        for name in _from_project(added, project_root, cache_root):
            sys.modules.pop(name, None)
        _restore_torch_op_registrations(registered)
        invalidate_finders_under(user_folders)


_TORCH_OP_REGISTRY = "coremltools.converters.mil.frontend.torch.torch_op_registry"


def _torch_op_registrations() -> dict[str, Any] | None:
    """coremltools' torch-op registry as it is before a stage (None: not imported yet)."""
    module = sys.modules.get(_TORCH_OP_REGISTRY)
    return module._TORCH_OPS_REGISTRY.name_to_func_mapping.copy() if module is not None else None


def _restore_torch_op_registrations(saved: dict[str, Any] | None) -> None:
    """What a plugin registered with coremltools is taken back when the stage ends, with the
    plugin module itself: the next model in this worker converts without it (it is not in
    that model's key), and importing the plugin again registers it again without a clash."""
    module = sys.modules.get(_TORCH_OP_REGISTRY)
    if module is None:
        return
    mapping = module._TORCH_OPS_REGISTRY.name_to_func_mapping
    if saved is not None:
        mapping.clear()
        mapping.update(saved)
        return
    # Imported during this stage: keep coremltools' own translations, put back any a plugin
    # overrode, drop the rest.
    ops = sys.modules.get("coremltools.converters.mil.frontend.torch.ops")
    for name, function in mapping.copy().items():
        if not str(getattr(function, "__module__", "")).startswith("coremltools"):
            original = getattr(ops, name, None) if ops is not None else None
            if callable(original) and str(getattr(original, "__module__", "")).startswith("coremltools"):
                mapping[name] = original
            else:
                del mapping[name]


def _from_project(names: list[str], root: str | None, cache_root: Path) -> list[str]:
    """The modules among ``names`` loaded from the project's own folders (not installed
    packages, not modelbuild itself, not the store)."""
    if not root:
        return []
    project, cache = Path(root).resolve(), cache_root.resolve()
    found = []
    for name in sorted(names):
        try:
            where = vars(sys.modules[name]).get("__file__")  # never a lazy module's __getattr__
        except (KeyError, TypeError):
            continue
        if not where or name.split(".")[0] == "modelbuild":
            continue
        path = Path(where).resolve()
        if project in path.parents and cache not in path.parents and not {"site-packages", "dist-packages"} & set(path.parts):
            found.append(name)
    return found


def _unkeyed_imports(added: list[str], root: str | None, cache_root: Path) -> list[str]:
    """Modules the stage imported from the project's own folders instead of the snapshot (an
    import by a computed name, reached through the working directory or PYTHONPATH): their
    content is not in the key, so a change to them would not rebuild. Said, never silent."""
    if root is None:
        return []
    notes = []
    for name in _from_project(added, root, cache_root)[:3]:
        where = Path(vars(sys.modules[name])["__file__"]).resolve().relative_to(Path(root).resolve())
        notes.append(
            f"unkeyed: module {name!r} was imported from {where.as_posix()}, not from the build's snapshot; "
            "changing it will not rebuild: list it in source.code"
        )
    return notes


def _discard(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
