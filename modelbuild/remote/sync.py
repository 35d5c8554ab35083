"""``modelbuild cache push`` and ``cache verify --remote``: explicit syncs, outside a build.

``cache pull`` needs stage keys, which only a walk of the graph can compute: it is a build
that runs nothing (``BuildOptions.fetch_only``), in the command line module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from modelbuild.remote.cache import RemoteCache
from modelbuild.store.objects import ObjectStore

Progress = Callable[[int], None]  # called with how many items were done since the last call


@dataclass
class PushReport:
    records: int = 0  # action records written
    objects: int = 0  # objects uploaded (the rest were on the remote already)
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # keys whose object is not in the local store


def push_entries(cache: RemoteCache, store: ObjectStore, entries: Iterable[tuple[str, str, dict]], progress: Progress) -> PushReport:
    """Upload each (key, output digest, info): the object first, the record after it."""
    report = PushReport()
    for key, output, info in entries:
        if not store.has(output):
            report.missing.append(key)
            progress(1)
            continue
        sent = cache.push_object(output, store)
        report.objects += 1 if sent else 0
        report.bytes += sent
        cache.push_record(key, output, store, info)
        report.records += 1
        progress(1)
    return report


@dataclass
class RemoteCheck:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    removed: bool = False


def verify_remote(cache: RemoteCache, scratch: Path, remove_corrupt: bool, progress: Progress, objects: list[tuple[str, str]] | None = None) -> RemoteCheck:
    """Download and re-hash every remote object. Corrupt ones are removed when this machine
    may write to the remote (``push``): a reader already ignores them, and the next pushing
    build uploads the right bytes."""
    check = RemoteCheck()
    for index, (digest, kind) in enumerate(objects if objects is not None else cache.object_digests()):
        check.checked += 1
        if not cache.check(digest, kind, scratch / str(index)):
            check.corrupt.append(digest)
            if remove_corrupt:
                cache.remove_object(digest, kind)
        progress(1)
    check.removed = remove_corrupt and bool(check.corrupt)
    return check
