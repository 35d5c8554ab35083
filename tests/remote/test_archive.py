"""Folder objects as tar files: deterministic when packed, refused when they reach out."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from modelbuild.remote.archive import UnsafeArchive, pack, unpack
from modelbuild.store.hashing import hash_tree


def test_packing_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    folder = tmp_path / "pkg"
    (folder / "Data" / "weights").mkdir(parents=True)
    (folder / "Manifest.json").write_text("{}")
    (folder / "Data" / "weights" / "weight.bin").write_bytes(b"\0" * 1000)
    pack(folder, tmp_path / "one.tar")
    (folder / "Manifest.json").touch()  # another mtime: the same archive
    pack(folder, tmp_path / "two.tar")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    unpack(tmp_path / "one.tar", tmp_path / "out")
    assert hash_tree(tmp_path / "out") == hash_tree(folder)


def _archive(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../escaped"),
        tarfile.TarInfo("/etc/escaped"),
    ],
    ids=["climbs out", "absolute"],
)
def test_a_member_outside_the_folder_is_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = _archive(tmp_path / "evil.tar", member)
    with pytest.raises(UnsafeArchive):
        unpack(archive, tmp_path / "out" / "tree")
    assert not (tmp_path / "out" / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_links_and_garbage_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(UnsafeArchive, match="not a plain file"):
        unpack(_archive(tmp_path / "link.tar", link), tmp_path / "a")
    (tmp_path / "garbage.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(UnsafeArchive):
        unpack(tmp_path / "garbage.tar", tmp_path / "b")
