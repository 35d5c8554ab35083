"""What one build does with the remote: look a missed key up, fetch and check what it names,
push what this machine built (in the background, objects before records), and turn any
trouble into one warning, after which the build goes on without that half of the remote.

The coordinator alone uses a session; the state database never leaves its thread (pushes
read only the object store)."""

from __future__ import annotations

import concurrent.futures as futures
import threading
from dataclasses import dataclass, field
from typing import Any

from modelbuild.remote.cache import RemoteCache, RemoteCorrupt, RemoteRecord, RemoteTrouble
from modelbuild.remote.config import RemoteConfig
from modelbuild.store.objects import ObjectStore


@dataclass
class Traffic:
    fetched: int = 0  # stages
    fetched_bytes: int = 0
    pushed: int = 0  # action records written
    pushed_bytes: int = 0
    trouble: list[str] = field(default_factory=list)

    def to_json(self, url: str, push: bool) -> dict[str, Any]:
        return {"url": url, "push": push, **self.__dict__}


class RemoteSession:
    def __init__(self, config: RemoteConfig, store: ObjectStore, uploads: int = 2) -> None:
        self.config = config
        self.store = store
        self.traffic = Traffic()
        self._cache: RemoteCache | None = None
        self._reads_off = False
        self._writes_off = not config.push
        self._corrupt: set[str] = set()  # keys and digests found corrupt: written over on push
        self._lock = threading.Lock()
        self._uploads = uploads
        self._pool: futures.ThreadPoolExecutor | None = None
        self._pending: list[futures.Future] = []

    @property
    def warnings(self) -> list[str]:
        return list(self.traffic.trouble)

    def _open(self) -> RemoteCache:
        with self._lock:
            if self._cache is None:
                self._cache = RemoteCache(self.config)
            return self._cache

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, key: str, label: str) -> tuple[RemoteRecord, int] | None:
        """Fetch the entry for ``key`` into the local store: (record, bytes fetched), or None
        (not there, corrupt, or the remote is not usable: then the caller builds)."""
        if self._reads_off:
            return None
        record = None
        try:
            cache = self._open()
            record = cache.record(key)
            if record is None:
                return None
            sent = cache.fetch(record.output, record.kind, self.store)
        except RemoteCorrupt as exc:
            with self._lock:
                self._corrupt.update({key, record.output} if record else {key})
            self._warn(f"{label}: the remote entry was ignored: {exc}; building it here")
            return None
        except RemoteTrouble as exc:
            if self._reads_off:
                return None
            self._reads_off = True
            self._warn(f"{exc}; building locally (the remote is not read again in this build)")
            return None
        except OSError as exc:  # the local disk (full) while storing what was fetched
            self._reads_off = True
            self._warn(f"cannot store what the remote sent: {exc}; building locally")
            return None
        with self._lock:
            self.traffic.fetched += 1
            self.traffic.fetched_bytes += sent
        return record, sent

    # -- writing -------------------------------------------------------------------------------

    @property
    def pushing(self) -> bool:
        return not self._writes_off

    def push(self, key: str, output: str, info: dict[str, Any], built: bool) -> None:
        """Queue the upload of one stage's entry. A stage that was only found in the local
        cache is pushed when the remote lacks its record (a cache from before push was on)."""
        if self._writes_off:
            return
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(max_workers=self._uploads, thread_name_prefix="modelbuild-push")
        self._pending.append(self._pool.submit(self._push, key, output, info, built))

    def _push(self, key: str, output: str, info: dict[str, Any], built: bool) -> None:
        if self._writes_off:
            return
        try:
            cache = self._open()
            with self._lock:
                overwrite = output in self._corrupt
                rewrite = key in self._corrupt
            if not built and not overwrite and not rewrite and cache.has_record(key):
                return
            sent = cache.push_object(output, self.store, overwrite=overwrite)
            cache.push_record(key, output, self.store, info)  # last: readers never see a record without its object
        except RemoteTrouble as exc:
            with self._lock:
                first, self._writes_off = not self._writes_off, True
            if not first:  # another upload already said it
                return
            what = "refused the upload (read-only credentials?)" if exc.denied else "could not take the upload"
            self._warn(f"the remote {what}: {exc}; nothing more is pushed in this build (the build itself is unaffected)")
            return
        except OSError as exc:  # an object evicted meanwhile, a full tmp: this entry stays local
            self._warn(f"an entry could not be pushed: {exc}")
            return
        with self._lock:
            self.traffic.pushed += 1
            self.traffic.pushed_bytes += sent

    def finish(self) -> Traffic:
        """Wait for the uploads (a build ends only when what it pushes is on the remote)."""
        for future in self._pending:
            future.result()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return self.traffic

    def _warn(self, message: str) -> None:
        with self._lock:
            if message not in self.traffic.trouble:
                self.traffic.trouble.append(message)
