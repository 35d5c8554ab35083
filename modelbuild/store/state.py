"""The state database (sqlite): the stat cache, the action cache and the last record of
every stage, each write in a transaction so an interrupted build leaves nothing half-made."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.store.hashing import hash_tree
from modelbuild.store.paths import disk_size
from modelbuild.store.signature import FileSignature, stat_signature

SCHEMA_VERSION = 5

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, signature TEXT NOT NULL, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    key TEXT PRIMARY KEY, output TEXT NOT NULL, info TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS stages (
    model TEXT NOT NULL, stage TEXT NOT NULL, key TEXT NOT NULL, material TEXT NOT NULL,
    output TEXT NOT NULL, PRIMARY KEY (model, stage));
CREATE TABLE IF NOT EXISTS validated (digest TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS installed (path TEXT PRIMARY KEY, digest TEXT NOT NULL, signature TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ActionRecord:
    output: str
    info: dict[str, Any]


class StateDB:
    """One connection, used by the coordinating process only (workers never write here)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """``read_only``: ``plan`` on a cache it may not write. The database is read from a
        private copy, so whatever planning records (file digests) goes nowhere."""
        self.path = path
        self.repaired: str | None = None  # why the file was set aside and started anew, if it was
        self._scratch: Path | None = None
        if read_only:
            path = self._private_copy(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open(path)
        except sqlite3.DatabaseError as exc:
            if read_only or not _corruption(exc):
                raise  # locked, full, unreadable: the machine's problem, said in one line by the CLI
            # A truncated or corrupt state file: the object store is the truth, and the state
            # is a cache of it. Set the file aside (for a bug report) and start anew.
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(str(path) + suffix)
                if source.exists():
                    os.replace(source, Path(str(aside) + suffix))
            self.repaired = f"{path} was unreadable ({exc}); set aside as {aside.name} and started anew (entries are rebuilt or found again)"
            self._open(path)
        self._hashed = 0

    def _open(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        version = self._schema_version()
        if version != SCHEMA_VERSION:
            # A state file from another modelbuild version is thrown away, never misread.
            with self.transaction():
                for table in ("meta", "files", "actions", "stages", "validated", "objects", "installed"):
                    self.conn.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in _TABLES.strip().split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        # Reads every page (about 1 ms for a cache of hundreds of entries): a file truncated or
        # damaged anywhere is found here, not in the middle of a build.
        verdict = self.conn.execute("PRAGMA quick_check(1)").fetchone()
        if verdict is None or verdict[0] != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed ({verdict[0] if verdict else 'no answer'})")

    def _private_copy(self, path: Path) -> Path:
        import shutil
        import tempfile

        self._scratch = Path(tempfile.mkdtemp(prefix="modelbuild-plan-"))
        copy = self._scratch / path.name
        for suffix in ("", "-wal"):
            source = Path(str(path) + suffix)
            if source.is_file():
                shutil.copyfile(source, Path(str(copy) + suffix))
        return copy

    def _schema_version(self) -> int | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.OperationalError:
            return None
        return int(row[0]) if row else None

    def transaction(self) -> "_Transaction":
        return _Transaction(self.conn)

    def close(self) -> None:
        self.conn.close()
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)

    # -- the stat cache -------------------------------------------------------------------

    def file_digest(self, path: Path) -> str:
        """The content digest of ``path``, re-reading it only when its stat signature changed."""
        signature = stat_signature(path)
        known = self.known_digest(path, signature)
        if known is not None:
            return known
        digest = hash_tree(path)
        self.count_hashed(path)
        self.remember_file(path, signature, digest)
        return digest

    def known_digest(self, path: Path, signature: "FileSignature") -> str | None:
        """The digest recorded for ``path`` when it had this stat signature, if any."""
        row = self.conn.execute("SELECT signature, digest FROM files WHERE path=?", (str(path),)).fetchone()
        return row[1] if row and row[0] == signature.text else None

    def recorded_digest(self, path: Path) -> str | None:
        """The digest last recorded for ``path``, whatever its signature now (``cache gc``
        keeps that snapshot: it is what the next build will most likely ask for)."""
        row = self.conn.execute("SELECT digest FROM files WHERE path=?", (str(path),)).fetchone()
        return row[0] if row else None

    def remember_file(self, path: Path, signature: "FileSignature", digest: str) -> None:
        # A file modified within the filesystem's timestamp granularity could change again
        # with the same mtime; don't remember such a signature (as git and ninja do).
        if time.time_ns() - signature.newest_ns <= 2_000_000_000:
            return
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO files VALUES (?,?,?)", (str(path), signature.text, digest))

    def count_hashed(self, path: Path) -> None:
        self._hashed += disk_size(path)

    @property
    def bytes_hashed(self) -> int:
        return self._hashed

    # -- the action cache and stage records -------------------------------------------------

    def action(self, key: str) -> ActionRecord | None:
        row = self.conn.execute("SELECT output, info FROM actions WHERE key=?", (key,)).fetchone()
        return ActionRecord(row[0], json.loads(row[1])) if row else None

    def forget_action(self, key: str) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM actions WHERE key=?", (key,))

    def last_stage(self, model: str, stage: str) -> tuple[str, dict[str, Any], str] | None:
        row = self.conn.execute("SELECT key, material, output FROM stages WHERE model=? AND stage=?", (model, stage)).fetchone()
        return (row[0], json.loads(row[1]), row[2]) if row else None

    def record(self, model: str, stage: str, key: str, material: dict[str, Any], output: str, info: dict[str, Any]) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO actions VALUES (?,?,?,?)", (key, output, json.dumps(info, sort_keys=True), time.time()))
            self.conn.execute("INSERT OR REPLACE INTO stages VALUES (?,?,?,?,?)", (model, stage, key, json.dumps(material, sort_keys=True), output))

    def remember_stage(self, model: str, stage: str, key: str, material: dict[str, Any], output: str) -> None:
        """Point (model, stage) at an action that was already cached (e.g. after a revert)."""
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO stages VALUES (?,?,?,?,?)", (model, stage, key, json.dumps(material, sort_keys=True), output))

    # -- store entries: the stat signature they had when last known intact ------------------

    def object_signature(self, digest: str) -> str | None:
        row = self.conn.execute("SELECT signature FROM objects WHERE digest=?", (digest,)).fetchone()
        return row[0] if row else None

    def remember_object(self, digest: str, signature: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO objects VALUES (?,?)", (digest, signature))

    def forget_object(self, digest: str) -> None:
        """An evicted entry: no action or stage record may point at it any more."""
        with self.transaction():
            self.conn.execute("DELETE FROM objects WHERE digest=?", (digest,))
            self.conn.execute("DELETE FROM actions WHERE output=?", (digest,))
            self.conn.execute("DELETE FROM stages WHERE output=?", (digest,))

    def stage_records(self) -> list[tuple[str, str, str, str]]:
        """(model, stage, key, output) of every stage's last record."""
        return [tuple(row) for row in self.conn.execute("SELECT model, stage, key, output FROM stages ORDER BY model, stage")]

    def action_outputs(self) -> list[tuple[str, str]]:
        return [tuple(row) for row in self.conn.execute("SELECT key, output FROM actions")]

    def forget_actions(self, keys: list[str]) -> None:
        with self.transaction():
            self.conn.executemany("DELETE FROM actions WHERE key=?", [(k,) for k in keys])

    # -- artifacts copied into build/: what each one was, and its stat signature then -----------

    def installed(self, path: Path) -> tuple[str, str] | None:
        """(digest, stat signature) of the artifact last copied to ``path``."""
        row = self.conn.execute("SELECT digest, signature FROM installed WHERE path=?", (str(path),)).fetchone()
        return (row[0], row[1]) if row else None

    def remember_installed(self, path: Path, digest: str, signature: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO installed VALUES (?,?,?)", (str(path), digest, signature))

    def forget_installed(self, path: Path) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM installed WHERE path=?", (str(path),))

    # -- schema-valid manifests (see manifest.load.ValidationMemo) ------------------------------

    def is_valid(self, digest: str) -> bool:
        return self.conn.execute("SELECT 1 FROM validated WHERE digest=?", (digest,)).fetchone() is not None

    def mark_valid(self, digest: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO validated VALUES (?)", (digest,))


def _corruption(exc: sqlite3.DatabaseError) -> bool:
    """Only a damaged file is set aside: "database is locked" or a full disk is not damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
