"""The remote half of the cache: objects by digest and action records by key, on any fsspec
filesystem, laid out as the local store is::

    <url>/v1/objects/ab/<digest>        a file object
    <url>/v1/objects/ab/<digest>.tar    a folder object (remote.archive)
    <url>/v1/actions/cd/<key>.json      stage key -> output digest, kind, size, notes, figures

Writers upload objects first and the record last, so a reader that sees a record finds its
objects (a reader still re-hashes them: a remote is trusted for nothing). Two writers of the
same key write the same bytes. Nothing here decides what a build does with trouble: every
failure of the filesystem becomes a ``RemoteTrouble`` the caller turns into one warning.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.remote.archive import UnsafeArchive, pack, unpack
from modelbuild.remote.config import RemoteConfig
from modelbuild.store.hashing import hash_tree
from modelbuild.store.objects import ObjectStore
from modelbuild.store.paths import disk_size, remove

LAYOUT = "v1"
_ABSENT = object()
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Defaults for S3: a server that is gone is found in seconds, not after botocore's minutes of
# retries. A user's own options.config_kwargs win.
S3_DEFAULTS = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2, "mode": "standard"}}}


class RemoteTrouble(Exception):
    """The remote could not be used: unreachable, denied, timed out. ``denied`` separates a
    refusal (read-only credentials) from a remote that is not there."""

    def __init__(self, message: str, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


class RemoteCorrupt(Exception):
    """A remote object whose bytes are not its digest, or a record that is not one."""


@dataclass(frozen=True)
class RemoteRecord:
    key: str
    output: str
    kind: str  # "file" | "dir"
    size: int
    info: dict[str, Any]


def kind_of(path: Path) -> str:
    return "dir" if path.is_dir() else "file"


class RemoteCache:
    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        try:
            import fsspec
        except ImportError:  # pragma: no cover - fsspec comes with the remote extra
            raise RemoteTrouble("fsspec is not installed: pip install 'modelbuild[remote]'") from None
        scheme = config.url.split("://", 1)[0] if "://" in config.url else "file"
        options = _merged(S3_DEFAULTS, config.options) if scheme in ("s3", "s3a") else dict(config.options)
        if scheme in ("s3", "s3a"):
            options.setdefault("skip_instance_cache", True)  # a fresh view: another machine may have pushed since
            options.setdefault("use_listings_cache", False)
            if "session" not in options:
                options["session"] = _s3_session()
        try:
            self.fs, root = fsspec.core.url_to_fs(config.url, **options)
        except ImportError as exc:  # s3fs / gcsfs missing
            raise RemoteTrouble(f"cannot open {config.display}: {exc} (pip install 'modelbuild[remote]')") from None
        except Exception as exc:  # noqa: BLE001 - a filesystem refusing its options
            raise RemoteTrouble(f"cannot open {config.display}: {_words(exc, config.url)}") from None
        if scheme in ("s3", "s3a"):
            self.fs.retries = 1  # s3fs retries a timeout five times over botocore's own attempts
        self.root = f"{root.rstrip('/')}/{LAYOUT}"
        self.local = "file" in _protocols(self.fs) or "local" in _protocols(self.fs)

    # -- paths ---------------------------------------------------------------------------------

    def object_path(self, digest: str, kind: str) -> str:
        return f"{self.root}/objects/{digest[:2]}/{digest}" + (".tar" if kind == "dir" else "")

    def action_path(self, key: str) -> str:
        return f"{self.root}/actions/{key[:2]}/{key}.json"

    # -- reading -------------------------------------------------------------------------------

    def record(self, key: str) -> RemoteRecord | None:
        """The action record for ``key``; None when the remote has none."""
        raw = self._call(self.fs.cat_file, self.action_path(key), missing=None)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            record = RemoteRecord(key, data["output"], data["kind"], int(data["size"]), _printable(dict(data.get("info", {}))))
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteCorrupt(f"action record {key[:12]} is not a record ({exc})") from None
        if not _DIGEST.match(record.output) or record.kind not in ("file", "dir"):
            raise RemoteCorrupt(f"action record {key[:12]} names no valid object")
        return record

    def fetch(self, digest: str, kind: str, store: ObjectStore) -> int:
        """Download one object into the local store, re-hashed first; the bytes transferred.
        An object already in the local store is not fetched (the caller trusts it as usual)."""
        if store.has(digest):
            return 0
        work = store.tmp / f"fetch-{uuid.uuid4().hex}"
        work.mkdir(parents=True)
        try:
            download = work / "object"
            if self._call(self.fs.get_file, self.object_path(digest, kind), str(download), missing=_ABSENT) is _ABSENT or not download.is_file():
                # A record whose object is gone (removed by `cache verify --remote`, or never
                # whole): this entry is unusable, the rest of the remote is fine.
                raise RemoteCorrupt(f"object {digest[:12]} named by a record is not on the remote")
            size = download.stat().st_size
            if kind == "dir":
                folder = work / "tree"
                try:
                    unpack(download, folder)
                except UnsafeArchive as exc:
                    raise RemoteCorrupt(f"object {digest[:12]} is not a safe archive ({exc})") from None
                download.unlink()
                download = folder
            actual = hash_tree(download)
            if actual != digest:
                raise RemoteCorrupt(f"object {digest[:12]} holds other bytes (they hash to {actual[:12]})")
            store.adopt(download, digest)
            return size
        finally:
            remove(work)

    def has_object(self, digest: str, kind: str) -> bool:
        return bool(self._call(self.fs.exists, self.object_path(digest, kind)))

    def has_record(self, key: str) -> bool:
        return bool(self._call(self.fs.exists, self.action_path(key)))

    def object_digests(self) -> list[tuple[str, str]]:
        """(digest, kind) of every object on the remote (``cache verify --remote``)."""
        found = []
        for path in self._call(self.fs.find, f"{self.root}/objects", missing=[]):
            name = str(path).rsplit("/", 1)[-1]
            digest, _, suffix = name.partition(".")
            if _DIGEST.match(digest) and suffix in ("", "tar") and not self._linked_out(str(path)):
                found.append((digest, "dir" if suffix == "tar" else "file"))
        return sorted(found)

    def _linked_out(self, path: str) -> bool:
        """On a local or mounted remote: whether the folder holding ``path`` is reached through
        a link that leads out of the remote (its files are not the remote's to list or remove)."""
        if not self.local:
            return False
        root = os.path.realpath(self.root)
        folder = os.path.realpath(os.path.dirname(path))
        return folder != root and not folder.startswith(root + os.sep)

    def check(self, digest: str, kind: str, scratch: Path) -> bool:
        """Re-hash one remote object (downloaded into ``scratch``, then removed)."""
        probe = ObjectStore(scratch)
        try:
            self.fetch(digest, kind, probe)
            return True
        except RemoteCorrupt:
            return False
        finally:
            remove(scratch)

    # -- writing -------------------------------------------------------------------------------

    def push_object(self, digest: str, store: ObjectStore, overwrite: bool = False) -> int:
        """Upload one local object unless the remote has it; the bytes sent."""
        source = store.path(digest)
        kind = kind_of(source)
        target = self.object_path(digest, kind)
        if not overwrite and self.has_object(digest, kind):
            return 0
        if kind == "file":
            return self._upload(source, target)
        archive = store.tmp / f"push-{uuid.uuid4().hex}.tar"
        archive.parent.mkdir(parents=True, exist_ok=True)
        try:
            pack(source, archive)
            return self._upload(archive, target)
        finally:
            remove(archive)

    def push_record(self, key: str, output: str, store: ObjectStore, info: dict[str, Any]) -> None:
        """Write the action record: call only once its object is on the remote."""
        source = store.path(output)
        body = json.dumps({"format": 1, "output": output, "kind": kind_of(source), "size": disk_size(source), "info": info}, sort_keys=True)
        scratch = store.tmp / f"record-{uuid.uuid4().hex}.json"
        scratch.parent.mkdir(parents=True, exist_ok=True)
        try:
            scratch.write_text(body, encoding="utf-8")
            self._upload(scratch, self.action_path(key))
        finally:
            remove(scratch)

    def remove_object(self, digest: str, kind: str) -> None:
        path = self.object_path(digest, kind)
        if self._linked_out(path):
            raise RemoteTrouble(f"{self.config.display}: {path} is reached through a link that leads out of the remote; it is not removed")
        self._call(self.fs.rm_file, path, missing=None)

    def _upload(self, source: Path, target: str) -> int:
        if self.local:
            # A local or mounted disk: write beside, then rename, so a reader never sees half a
            # file (an object store's PUT is atomic by itself).
            parent = target.rsplit("/", 1)[0]
            self._call(self.fs.makedirs, parent, exist_ok=True)
            partial = f"{target}.partial-{uuid.uuid4().hex}"
            self._call(self.fs.put_file, str(source), partial)
            self._call(self.fs.mv, partial, target)
        else:
            self._call(self.fs.put_file, str(source), target)
        return source.stat().st_size

    def _call(self, function: Any, *args: Any, missing: Any = ..., **kwargs: Any) -> Any:
        """Call the filesystem; a missing path gives ``missing`` (when given), anything else
        is RemoteTrouble with words a person can act on."""
        try:
            return function(*args, **kwargs)
        except FileNotFoundError:
            if missing is ...:
                raise RemoteTrouble(f"{self.config.display}: {args[0] if args else ''} is missing") from None
            return missing
        except PermissionError as exc:
            raise RemoteTrouble(f"{self.config.display} refused access: {_words(exc, self.config.url)}", denied=True) from None
        except Exception as exc:  # noqa: BLE001 - unreachable, timed out, throttled: all mean "build locally"
            raise RemoteTrouble(f"{self.config.display} could not be reached: {_words(exc, self.config.url)}", denied=_denied(exc)) from None


def _s3_session() -> Any:
    """An aiobotocore session whose uploads do not send ``Expect: 100-continue``: aiohttp
    waits for the go-ahead with no timeout, so a server that accepts and never answers would
    hang the build (measured: still waiting after 20 minutes)."""
    try:
        import botocore.handlers
        from aiobotocore.session import AioSession
    except ImportError:  # pragma: no cover - s3fs brings both
        return None
    session = AioSession()
    session.unregister("before-call.s3", botocore.handlers.add_expect_header)
    return session


def _merged(defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in options.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return set(protocol) if isinstance(protocol, (tuple, list)) else {protocol}


def _denied(exc: BaseException) -> bool:
    text = str(exc)
    return any(word in text for word in ("AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(value: Any) -> Any:
    """A record's notes and figures, which no digest covers, without control characters: the
    summary prints them, and an escape sequence from a remote must not reach the terminal."""
    if isinstance(value, str):
        return _CONTROL.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _words(exc: BaseException, url: str) -> str:
    """A library's error in one line, without the URL's credentials (libraries quote the URL
    they were given)."""
    from modelbuild.remote.config import scrub

    text = scrub(" ".join(str(exc).split()), url) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
