"""``modelbuild cache verify`` and ``modelbuild cache gc``: the store's integrity and size."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelbuild.store.objects import ObjectStore
from modelbuild.store.state import StateDB


@dataclass
class CacheReport:
    checked: int = 0
    evicted: list[str] = field(default_factory=list)
    freed: int = 0
    scratch_freed: int = 0


def verify_cache(store: ObjectStore, db: StateDB) -> CacheReport:
    """Re-hash every entry; evict the ones whose bytes no longer match their digest."""
    report = CacheReport(scratch_freed=store.clean_scratch())
    for digest in store.digests():
        report.checked += 1
        freed = confirm_or_evict(store, db, digest)
        if freed is not None:
            report.freed += freed
            report.evicted.append(digest)
    return report


def confirm_or_evict(store: ObjectStore, db: StateDB, digest: str) -> int | None:
    """Re-hash one entry. Intact: remember its signature (so the next build trusts it without
    hashing) and return None. Corrupt: evict it and return the bytes freed."""
    if store.intact(digest):
        db.remember_object(digest, store.signature(digest))
        return None
    db.forget_object(digest)
    return store.evict(digest)


def collect_garbage(store: ObjectStore, db: StateDB, reachable: set[str], dry_run: bool) -> CacheReport:
    """Remove entries no current stage record reaches (and the action records pointing at them)."""
    report = CacheReport(scratch_freed=0 if dry_run else store.clean_scratch())
    for digest in store.digests():
        report.checked += 1
        if digest in reachable:
            continue
        report.evicted.append(digest)
        if dry_run:
            report.freed += store.size(digest)
        else:
            report.freed += store.evict(digest)
            db.forget_object(digest)
    if not dry_run:
        db.forget_actions([key for key, output in db.action_outputs() if output not in reachable])
    return report
