"""A Dask cluster behind the executor's pool interface (``submit`` -> concurrent Future).

``local:N`` starts a LocalCluster of N single-threaded worker processes; ``tcp://HOST:PORT``
joins a running scheduler. Benchmarks ask for the ``benchmark`` resource where workers offer
it (every LocalCluster worker does), so they land on a worker that runs one thing at a time;
the executor already starts them only when nothing else runs. A worker lost mid-stage is
replaced by Dask, which runs the stage again elsewhere; a stage whose output does not arrive
whole is never recorded (the coordinator re-hashes it)."""

from __future__ import annotations

import concurrent.futures as futures
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from modelbuild.errors import Unavailable, UserError
from modelbuild.graph.outcome import Outcome
from modelbuild.remote.cache import RemoteCache
from modelbuild.remote.config import RemoteConfig
from modelbuild.stages import STAGES
from modelbuild.stages.base import PREVIOUS
from modelbuild.store.objects import ObjectStore
from modelbuild.store.paths import replace_file

BENCHMARK = "benchmark"
RETRIES = 1  # a stage that raised on a worker (a fetch that failed) runs once more before it fails
_LOCAL = re.compile(r"^local:(\d+)$")


@dataclass(frozen=True)
class SchedulerSpec:
    address: str | None  # tcp://host:port, or None for a LocalCluster
    workers: int = 0

    @property
    def local(self) -> bool:
        return self.address is None


def _connect(client_class: Any, address: str, timeout: float) -> Any:
    """``Client(address, timeout=...)`` bounds the TCP connect only: a port that accepts and
    never answers would hang the build. The connect runs in a thread with a deadline."""
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = client_class(address, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if "client" in box:
        return box["client"]
    error = box.get("error")
    if error is None or isinstance(error, MemoryError):  # silent, or not a Dask scheduler at all
        raise OSError(f"no Dask scheduler answered at {address} within {timeout + 5:.0f} s")
    raise OSError(str(error)) from None


def parse_scheduler(text: str) -> SchedulerSpec:
    match = _LOCAL.match(text)
    if match:
        count = int(match.group(1))
        if count < 1:
            raise UserError(f"--scheduler: expected local:N with N at least 1, got {text!r}")
        return SchedulerSpec(None, count)
    if re.match(r"^(tcp|tls|ucx|inproc)://[^\s/]+$", text):
        return SchedulerSpec(text)
    raise UserError(f"--scheduler: expected tcp://HOST:PORT (a running Dask scheduler) or local:N (N worker processes here), got {text!r}")


class ClusterPool(futures.Executor):
    def __init__(self, spec: SchedulerSpec, remote: RemoteConfig | None, store: ObjectStore, connect_timeout: float = 10) -> None:
        if not spec.local and remote is None:
            raise UserError(
                f"--scheduler {spec.address}: workers on other machines cannot read this machine's cache; "
                "name a remote cache they can all reach ([remote] url in modelbuild.toml, MODELBUILD_REMOTE or --remote)"
            )
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UserError("--scheduler needs Dask: pip install 'modelbuild[cluster]'") from None
        for name in ("distributed", "tornado", "bokeh"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.store = store
        self.remote = remote
        self._cache = RemoteCache(remote) if remote is not None else None
        self._on_remote: set[str] = set()
        self._after = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelbuild-collect")
        self._lock = threading.Lock()
        self.cluster = None
        try:
            if spec.local:
                self.cluster = LocalCluster(
                    n_workers=spec.workers,
                    threads_per_worker=1,
                    processes=True,
                    resources={BENCHMARK: 1},
                    dashboard_address=None,
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # never a warning about a busy 8787
                    silence_logs=logging.CRITICAL,  # "Compute Failed" tracebacks belong in the stage's log, not the terminal
                )
                self.client = Client(self.cluster)
            else:
                self.client = _connect(Client, str(spec.address), connect_timeout)
        except (OSError, TimeoutError) as exc:
            if self.cluster is not None:
                self.cluster.close()
            raise Unavailable(f"--scheduler {spec.address or 'local'}: cannot reach the Dask scheduler: {exc}") from None
        workers = self.client.scheduler_info().get("workers", {})
        self.workers = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        self._benchmark_workers = any(BENCHMARK in (w.get("resources") or {}) for w in workers.values())

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        """``fn`` is the executor's ``run_stage`` with its job; anything else is refused."""
        node_json, inputs, files, _cache_dir, log_path = args
        exclusive = STAGES.get(node_json["stage"]).exclusive
        options: dict[str, Any] = {"pure": False, "retries": RETRIES}
        if exclusive and self._benchmark_workers:
            options["resources"] = {BENCHMARK: 1}
        result: futures.Future = futures.Future()
        result.set_running_or_notify_cancel()
        try:
            if self._cache is None:
                task = self.client.submit(fn, *args, **options)
                task.add_done_callback(lambda done: self._after.submit(self._settle, done, result, None))
                return result
            from modelbuild.cluster.remote_job import run_remote_stage

            # A stage's own previous output only speeds it up; it is not worth an upload.
            remote_inputs = {label: self._share(Path(path)) for label, path in inputs.items() if label != PREVIOUS}
            remote_files = {label: self._share(Path(path)) for label, path in files.items()}
            task = self.client.submit(run_remote_stage, node_json, remote_inputs, remote_files, self.remote, **options)
            task.add_done_callback(lambda done: self._after.submit(self._settle, done, result, Path(log_path)))
        except Exception as exc:  # noqa: BLE001 - the remote refused an input: this stage's failure
            result.set_exception(exc)
        return result

    def _share(self, path: Path) -> tuple[str, str]:
        """Make sure the remote holds this local object (workers fetch it from there)."""
        digest = path.name
        with self._lock:
            known = digest in self._on_remote
        if not known:
            assert self._cache is not None
            self._cache.push_object(digest, self.store)
            with self._lock:
                self._on_remote.add(digest)
        return digest, "dir" if path.is_dir() else "file"

    def _settle(self, task: Any, result: futures.Future, log_path: Path | None) -> None:
        """Runs off the scheduling thread: a remote outcome's output is fetched (re-hashed)
        into the local store and its log written where a local stage's would be. The Dask
        future is released at once: a result left in a worker's memory is computed again when
        that worker dies later."""
        try:
            self._take(task, result, log_path)
        finally:
            task.release()

    def _take(self, task: Any, result: futures.Future, log_path: Path | None) -> None:
        try:
            value = task.result()
            if log_path is None:
                result.set_result(value)
                return
            outcome: Outcome = value.outcome
            log_path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(log_path, value.log)
            if outcome.output is not None:
                assert self._cache is not None
                self._cache.fetch(outcome.output, value.kind, self.store)
                with self._lock:
                    self._on_remote.add(outcome.output)
            result.set_result(outcome)
        except BaseException as exc:  # noqa: BLE001 - the executor reports it as this stage's failure
            result.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
            self._after.shutdown(wait=wait)
