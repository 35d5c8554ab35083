"""One stage on a worker that does not share the coordinator's disk: fetch the inputs from
the remote cache (each re-hashed), run the stage into a worker-local store, upload the output
object, hand back the outcome with the log's text. Records are the coordinator's to write."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.graph.outcome import Outcome
from modelbuild.remote.cache import RemoteCache
from modelbuild.remote.config import RemoteConfig
from modelbuild.store.objects import ObjectStore

Objects = dict[str, tuple[str, str]]  # label -> (digest, kind)


@dataclass(frozen=True)
class RemoteOutcome:
    outcome: Outcome
    log: str  # the stage's log, written by the coordinator under build/<model>/logs/
    kind: str = "dir"


def worker_store(config: RemoteConfig) -> ObjectStore:
    """A cache folder per remote on each worker machine: inputs fetched once serve every later
    stage that reads them."""
    tag = hashlib.sha256(config.url.encode()).hexdigest()[:16]
    return ObjectStore(Path(tempfile.gettempdir()) / f"modelbuild-worker-{tag}")


def run_remote_stage(node_json: dict[str, Any], inputs: Objects, files: Objects, config: RemoteConfig) -> RemoteOutcome:
    from modelbuild.graph.worker import run_stage

    store = worker_store(config)
    cache = RemoteCache(config)
    for digest, kind in [*inputs.values(), *files.values()]:
        if store.has(digest) and not store.intact(digest):  # a worker's disk is no more trusted than a remote
            store.evict(digest)
        cache.fetch(digest, kind, store)  # raises on a corrupt object: Dask retries, then the stage fails
    log = store.root / "logs" / f"{node_json['model']}-{node_json['stage']}.log"
    outcome = run_stage(
        node_json,
        {label: str(store.path(digest)) for label, (digest, _) in inputs.items()},
        {label: str(store.path(digest)) for label, (digest, _) in files.items()},
        str(store.root),
        str(log),
    )
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    if outcome.output is None:
        return RemoteOutcome(outcome, text)
    cache.push_object(outcome.output, store)
    return RemoteOutcome(outcome, text, "dir" if store.path(outcome.output).is_dir() else "file")
