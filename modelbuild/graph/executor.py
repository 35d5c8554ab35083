"""Walking the stage graph: keys, cache hits, workers, early cutoff, materialised artifacts.

The executor knows nothing of Core ML or ONNX: stages declare what they read and write, and
this module only decides *whether* each one runs.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from modelbuild.errors import UserError
from modelbuild.graph.keys import explain, key_of, material
from modelbuild.graph.node import StageNode
from modelbuild.graph.outcome import Outcome
from modelbuild.report import BuildReport, StageResult, Status
from modelbuild.report.reasons import Reason, Why
from modelbuild.stages import STAGES
from modelbuild.stages.base import PREVIOUS
from modelbuild.store.objects import ObjectStore
from modelbuild.store.paths import disk_size, inside, remove
from modelbuild.store.snapshots import Snapshots
from modelbuild.store.state import StateDB

if TYPE_CHECKING:
    from modelbuild.remote.session import RemoteSession


@dataclass(frozen=True)
class BuildOptions:
    jobs: int = 2
    force: bool = False
    keep_going: bool = False
    dry_run: bool = False
    fetch_only: bool = False  # ``cache pull``: settle what the caches hold, run nothing


Listener = Callable[[str, StageNode, StageResult | None], None]
PoolFactory = Callable[[int], futures.Executor]


def process_pool(workers: int) -> futures.Executor:
    # Processes, not threads: conversion holds the GIL. "spawn": the coordinator holds sqlite
    # handles and threads that must not be forked.
    return futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


class Executor:
    def __init__(
        self,
        nodes: list[StageNode],
        db: StateDB,
        store: ObjectStore,
        out_dir: Path,
        options: BuildOptions,
        listener: Listener | None = None,
        pool_factory: PoolFactory = process_pool,
        remote: "RemoteSession | None" = None,
    ) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.order = [n.id for n in nodes]
        self.db = db
        self.store = store
        self.out_dir = out_dir
        self.options = options
        self.listener = listener or (lambda event, node, result: None)
        self.outputs: dict[str, str] = {}
        self.results: dict[str, StageResult] = {}
        self.rebuilt: set[str] = set()
        self.warnings: list[str] = []
        self.pool_factory = pool_factory
        self.remote = remote  # the shared cache, when the project or the command names one
        self.snapshots = Snapshots(store, db, copy=not options.dry_run)
        self.file_digests: dict[str, dict[str, str]] = {}  # node -> label -> snapshot digest
        self.lock_keys: dict[str, str] = {}  # node -> its key as modelbuild.lock records it

    def run(self) -> BuildReport:
        started = time.perf_counter()
        waiting = {nid: set(self.nodes[nid].deps) & set(self.nodes) for nid in self.order}
        ready = [nid for nid in self.order if not waiting[nid]]
        running: dict[futures.Future, tuple[str, str, dict]] = {}
        # At most as many stages in the pool as it has workers: a submitted stage then really
        # runs, so the display's "running" and its timers are true (queued ones stay in ready).
        decided: dict[str, tuple[str, dict]] = {}
        parked: dict[str, list[str]] = {}  # key -> nodes waiting for a running node with that key
        pool: futures.Executor | None = None
        stopping = False
        try:
            while ready or running:
                while ready and not stopping:
                    nid = self._next(ready, running)
                    if nid is None:
                        break
                    decision = decided.pop(nid, None) or self._decide(nid)
                    if decision is None:
                        ready += self._finish(nid, waiting)
                    elif not STAGES.get(self.nodes[nid].stage).runs_in_worker(self.nodes[nid]):
                        # Light stages (no torch, no coremltools) run here: a worker process
                        # would cost more than the stage.
                        done_now: futures.Future = futures.Future()
                        done_now.set_result(self._run_here(nid))
                        self._collect(nid, *decision, done_now)
                        if self.results[nid].status == Status.FAILED and not self.options.keep_going:
                            stopping = True
                        ready += self._finish(nid, waiting)
                    elif any(key == decision[0] for _, key, _ in running.values()):
                        # The same work is already running for another model (a variant
                        # shares its conversion with its base): wait and take it from the cache.
                        parked.setdefault(decision[0], []).append(nid)
                    elif len(running) >= self._workers():
                        decided[nid] = decision
                        ready.insert(0, nid)
                        break
                    else:
                        pool = pool or self._pool()
                        running[self._submit(nid, pool)] = (nid, *decision)
                if stopping and ready:
                    for nid in ready:
                        self._set(nid, StageResult(*self._ids(nid), status=Status.NOT_RUN, reasons=[Reason(Why.STOPPED)]))
                    ready = []
                if not running:
                    continue
                done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    nid, key, mat = running.pop(future)
                    self._collect(nid, key, mat, future)
                    ready = parked.pop(key, []) + ready
                    if self.results[nid].status == Status.FAILED and not self.options.keep_going:
                        stopping = True
                    ready += self._finish(nid, waiting)
            for nid in self.order:  # anything never reached (after a stop)
                if nid not in self.results:
                    self._set(nid, StageResult(*self._ids(nid), status=Status.NOT_RUN, reasons=[Reason(Why.STOPPED)]))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        report = BuildReport([self.results[nid] for nid in self.order], time.perf_counter() - started, list(self.warnings))
        if self.remote is not None:
            traffic = self.remote.finish()  # the uploads end before the build does
            report.warnings += traffic.trouble
            report.remote = traffic.to_json(self.remote.config.display, self.remote.config.push)
            report.seconds = time.perf_counter() - started
        return report

    def _next(self, ready: list[str], running: dict) -> str | None:
        """The next node to settle. Exclusive stages (benchmarks) start only when nothing else
        runs, and nothing starts beside them, so their timings see an idle machine."""
        if any(self._exclusive(nid) for nid, *_ in running.values()):
            return None
        for index, nid in enumerate(ready):
            if not self._exclusive(nid):
                return ready.pop(index)
        return ready.pop(0) if not running else None

    def _exclusive(self, nid: str) -> bool:
        return STAGES.get(self.nodes[nid].stage).exclusive

    # -- one node ----------------------------------------------------------------------------

    def _ids(self, nid: str) -> tuple[str, str]:
        node = self.nodes[nid]
        return node.model, node.stage

    def _decide(self, nid: str) -> tuple[str, dict] | None:
        """Settle a node now (cached, blocked, would run: None) or say it must run: (key, material)."""
        node = self.nodes[nid]
        blocked = [d for d in node.deps if self.results.get(d) and self.results[d].status in (Status.FAILED, Status.BLOCKED, Status.NOT_RUN)]
        if blocked:
            self._set(nid, StageResult(node.model, node.stage, Status.BLOCKED, reasons=[Reason(Why.BLOCKED, _stage(blocked[0]))]))
            return None
        skip = STAGES.get(node.stage).skip_reason(node)
        if skip:
            self._set(nid, StageResult(node.model, node.stage, Status.SKIPPED, reasons=[Reason(Why.SKIPPED, text=skip)]))
            return None
        pending = [d for d in node.deps if d not in self.outputs]
        if pending:  # only in a dry run: an upstream stage would run first
            self._set(nid, StageResult(node.model, node.stage, Status.WOULD_RUN, reasons=[Reason(Why.WAITING, _stage(pending[0]))]))
            return None
        try:
            mat = material(node, self.outputs, lambda p: self.snapshots.take(Path(p)))
        except (UserError, OSError) as exc:
            # A declared file that vanished, became a FIFO or never stops changing since the
            # manifest was checked: this model's problem, said once, never a traceback.
            message = str(exc) if isinstance(exc, UserError) else f"cannot read {exc.filename}: {exc.strerror}"
            self._set(nid, StageResult(node.model, node.stage, Status.FAILED, reasons=[Reason(Why.READING_FILES)], error=message, error_kind="user"))
            return None
        self.file_digests[nid] = mat["files"]
        self.lock_keys[nid] = key_of(
            {
                **mat,
                "inputs": {
                    dep.split(":", 1)[1]: (self.outputs[dep] if STAGES.get(self.nodes[dep].stage).lock == "bytes" else self.lock_keys[dep]) for dep in node.deps
                },
            }
        )
        key = key_of(mat)
        last = self.db.last_stage(node.model, node.stage)
        record = self.db.action(key)
        corrupt = False
        if record and not self.options.force and self.store.has(record.output):
            if self._trusted(record.output):
                self._cached(node, key, mat, record.output, record.info, last)
                return None
            corrupt = True
        if not self.options.force and not self.options.dry_run and self._fetch(node, key, mat, last):
            return None
        if self.options.force:
            reasons = [Reason(Why.FORCED)]
        elif corrupt:
            reasons = [Reason(Why.CORRUPT)]
            self.warnings.append(f"{node.model}: {node.stage}: cache entry was corrupt (its bytes no longer match its digest): evicted, rebuilding")
        elif record:
            reasons = [Reason(Why.MISSING)]
        else:
            reasons = explain(last[1] if last else None, mat)
        if self.options.dry_run or self.options.fetch_only:
            self._set(nid, StageResult(node.model, node.stage, Status.WOULD_RUN, reasons=reasons))
            return None
        self.results[nid] = StageResult(node.model, node.stage, Status.RUNNING, reasons=reasons)
        return key, mat

    def _fetch(self, node: StageNode, key: str, mat: dict, last: tuple | None) -> bool:
        """A local miss: take the entry from the remote cache when it has one (its objects
        re-hashed on the way in), and settle the node with it."""
        if self.remote is None or not self._shared(node):
            return False
        for _attempt in range(2):
            found = self.remote.lookup(key, f"{node.model}: {node.stage}")
            if found is None:
                return False
            record, sent = found
            # Already in the local store (another key made the same bytes): trusted as any entry.
            if sent or self._trusted(record.output):
                break
        else:
            return False
        self.db.record(node.model, node.stage, key, mat, record.output, record.info)
        self.db.remember_object(record.output, self.store.signature(record.output))
        self._cached(node, key, mat, record.output, record.info, last, fetched=sent)
        return True

    def _shared(self, node: StageNode) -> bool:
        """Whether this stage's entries go through the remote cache. Benchmarks do not: their
        figures measure the machine that ran them, and a laptop must not show CI's timings."""
        return self.remote is not None and STAGES.get(node.stage).role != "measure"

    def _trusted(self, digest: str) -> bool:
        """An entry is used only if its stat signature is the one recorded when it was known
        intact, or if re-hashing proves its bytes; a tampered entry is evicted."""
        from modelbuild.store.admin import confirm_or_evict

        if self.store.signature(digest) == self.db.object_signature(digest):
            return True
        if self.options.dry_run:  # planning reads; it never evicts (the cache may not even be writable)
            return self.store.intact(digest)
        return confirm_or_evict(self.store, self.db, digest) is None

    def _job_args(self, nid: str) -> tuple[dict, dict[str, str], dict[str, str], str, str]:
        node = self.nodes[nid]
        self.listener("start", node, None)
        inputs = {d.split(":", 1)[1]: str(self.store.path(self.outputs[d])) for d in node.deps}
        previous = self._previous(node)
        if previous is not None:
            inputs[PREVIOUS] = previous
        files = {label: str(self.store.path(digest)) for label, digest in self.file_digests[nid].items()}
        log = inside(self.out_dir / node.model / "logs" / f"{node.stage}.log", self.out_dir, "a log")
        return node.to_json(), inputs, files, str(self.store.root), str(log)

    def _previous(self, node: StageNode) -> str | None:
        """This stage's last output, for a stage that can build faster from it (ExecuTorch's
        weights-only patch); never under --force, which asks for a build from nothing."""
        if self.options.force or not STAGES.get(node.stage).reuses_previous:
            return None
        last = self.db.last_stage(node.model, node.stage)
        if last is None or not self.store.has(last[2]) or not self._trusted(last[2]):
            return None
        return str(self.store.path(last[2]))

    def _run_here(self, nid: str) -> Outcome:
        from modelbuild.graph.worker import run_stage

        return run_stage(*self._job_args(nid), redirect=False)

    def _submit(self, nid: str, pool: futures.Executor) -> futures.Future:
        from modelbuild.graph.worker import run_stage

        return pool.submit(run_stage, *self._job_args(nid))

    def _cached(self, node: StageNode, key: str, mat: dict, output: str, info: dict, last: tuple | None, fetched: int | None = None) -> None:
        """Settle a node with an entry the cache holds: local, or just ``fetched`` (bytes) from the remote."""
        if fetched is None and (last is None or last[0] != key):
            self.db.remember_stage(node.model, node.stage, key, mat, output)
        rebuilt_deps = [d for d in node.deps if d in self.rebuilt]
        if fetched is not None:
            reasons = [Reason(Why.REMOTE, after=fetched)]
        else:
            reasons = [Reason(Why.EARLY_CUTOFF, _stage(rebuilt_deps[0]))] if rebuilt_deps else [Reason(Why.UP_TO_DATE)]
            if self.remote is not None and self._shared(node) and not self.options.dry_run:
                self.remote.push(key, output, info, built=False)
        result = StageResult(
            node.model,
            node.stage,
            Status.REMOTE if fetched is not None else Status.CACHED,
            reasons=reasons,
            output=output,
            key=key,
            lock_key=self.lock_keys.get(node.id),
            notes=list(info.get("notes", [])),
            info=dict(info.get("info", {})),
        )
        self.outputs[node.id] = output
        self._materialise(node, result)
        self._set(node.id, result)

    def _collect(self, nid: str, key: str, mat: dict, future: futures.Future) -> None:
        node = self.nodes[nid]
        reasons = self.results[nid].reasons
        log = self.out_dir / node.model / "logs" / f"{node.stage}.log"
        try:
            outcome: Outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory)
            outcome = Outcome.failed("stage", f"worker process died: {type(exc).__name__}: {exc}", 0.0)
        if outcome.output is None:
            self._set(
                nid,
                StageResult(
                    node.model,
                    node.stage,
                    Status.FAILED,
                    reasons=reasons,
                    seconds=outcome.seconds,
                    error=outcome.error,
                    error_kind=outcome.error_kind,
                    log=_rel(log, self.out_dir.parent),
                    traceback=outcome.traceback,
                    notes=outcome.notes,
                    info=outcome.info,
                ),
            )
            return
        output = outcome.output
        self.db.record(node.model, node.stage, key, mat, output, {"notes": outcome.notes, "info": outcome.info})
        self.db.remember_object(output, self.store.signature(output))
        if self.remote is not None and self._shared(node):
            self.remote.push(key, output, {"notes": outcome.notes, "info": outcome.info}, built=True)
        self.outputs[nid] = output
        self.rebuilt.add(nid)
        result = StageResult(
            node.model,
            node.stage,
            Status.BUILT,
            reasons=reasons,
            seconds=outcome.seconds,
            output=output,
            key=key,
            lock_key=self.lock_keys.get(nid),
            notes=outcome.notes,
            info=outcome.info,
            log=_rel(log, self.out_dir.parent),
        )
        self._materialise(node, result)
        self._set(nid, result)

    def _finish(self, nid: str, waiting: dict[str, set[str]]) -> list[str]:
        newly = []
        for other in self.order:
            if nid in waiting[other]:
                waiting[other].discard(nid)
                if not waiting[other] and other not in self.results:
                    newly.append(other)
        return newly

    def _set(self, nid: str, result: StageResult) -> None:
        self.results[nid] = result
        self.listener("done", self.nodes[nid], result)

    def _workers(self) -> int:
        """Up to ``jobs`` stages at once, of one model or several: a model's conversions are
        independent of one another (Core ML, ONNX and ExecuTorch all read the capture), and
        on a single-model project they are the only parallelism there is."""
        return max(1, self.options.jobs)

    def _pool(self) -> futures.Executor:
        return self.pool_factory(self._workers())

    # -- artifacts in build/ -----------------------------------------------------------------

    def _materialise(self, node: StageNode, result: StageResult) -> None:
        """Copy a stage's artifacts from the store into build/<model>/, atomically, if they differ."""
        patterns = STAGES.get(node.stage).artifacts
        if not patterns or result.output is None:
            return
        for index, pattern in enumerate(patterns):
            name = pattern.format(model=node.model)
            source = self.store.path(result.output) / name
            dest = self.out_dir / node.model / name
            if index == 0:
                result.artifact = _rel(dest, self.out_dir.parent)
                result.size = disk_size(source)
            if self.options.dry_run:  # planning writes nothing into build/
                continue
            if source.exists():
                self._install(source, dest, result.output)
            else:  # an optional artifact this build did not produce (e.g. a .ptl): none is stale
                remove(dest)
                self.db.forget_installed(dest)

    def _install(self, source: Path, dest: Path, digest: str) -> None:
        """build/ is output, not state: a copy is trusted only while its stat signature is the
        one recorded when modelbuild wrote it, so an edited or deleted artifact is put back."""
        inside(dest, self.out_dir, "an artifact")
        recorded = self.db.installed(dest)
        if recorded is not None and recorded[0] == digest and dest.exists() and _signature(dest) == recorded[1]:
            return
        folder = dest.parent
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".{dest.name}.tmp-{os.getpid()}"
        remove(staging)
        if source.is_dir():
            shutil.copytree(source, staging)
        else:
            shutil.copyfile(source, staging)
        old = folder / f".{dest.name}.old-{os.getpid()}"
        if dest.exists() or dest.is_symlink():
            os.replace(dest, old)
        os.replace(staging, dest)
        remove(old)
        remove(folder / f".{dest.name}.digest")  # the marker files of older modelbuild versions
        self.db.remember_installed(dest, digest, _signature(dest))


def _signature(path: Path) -> str:
    from modelbuild.store.signature import stat_signature

    try:
        return stat_signature(path).text
    except (OSError, UserError):
        return ""


def _stage(node_id: str) -> str:
    """ "capture" from "tiny:capture"."""
    return node_id.split(":", 1)[1]


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
