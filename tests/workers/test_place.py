from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelbuild.errors import UserError
from modelbuild.workers.place import place_for, private_folder


def test_one_short_socket_per_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELBUILD_WORKERS_DIR", str(tmp_path / "w"))
    first, second = place_for(tmp_path / "a" / "cache"), place_for(tmp_path / "b" / "cache")
    assert first.socket != second.socket and first.folder == second.folder
    assert place_for(tmp_path / "a" / "cache").socket == first.socket
    assert oct((tmp_path / "w").stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o703])
def test_a_folder_others_can_enter_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, mode)
    monkeypatch.setenv("MODELBUILD_WORKERS_DIR", str(folder))
    with pytest.raises(UserError, match=f"only you can use.*mode {mode:o}"):
        private_folder()


def test_a_symlinked_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setenv("MODELBUILD_WORKERS_DIR", str(tmp_path / "link"))
    with pytest.raises(UserError, match="only you can use"):
        private_folder()
