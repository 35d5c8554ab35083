"""Pages copied ahead: the list a fork keeps, and a spare copying it without changing a byte."""

from __future__ import annotations

import os
import socket
import struct
import sys

import pytest

from modelbuild.workers import pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/pagemap is Linux's")


def _in_child(body) -> int:
    """Run ``body()`` in a fork; its return value (0..255) is the child's exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _covers(runs: list[tuple[int, int]], first: int, size: int) -> int:
    """How many of the pages in [first, first + size) the runs name."""
    wanted = set(range(first // pages.PAGE, (first + size - 1) // pages.PAGE + 1))
    named = set()
    for start, count in runs:
        named.update(range(start // pages.PAGE, start // pages.PAGE + count))
    return len(wanted & named)


def _buffer(npages: int) -> tuple[bytearray, int]:
    import ctypes

    data = bytearray(os.urandom(npages * pages.PAGE))  # every page present in the parent
    address = ctypes.addressof((ctypes.c_char * len(data)).from_buffer(data))
    return data, address


def test_a_fork_lists_the_pages_it_wrote_and_not_those_it_only_shares():
    data, address = _buffer(64)
    whole = len(data) - pages.PAGE  # the last page may share with another object

    def child() -> int:
        before = _covers(pages.written_runs(), address, whole)
        for offset in range(0, whole, pages.PAGE):
            data[offset] ^= 0xFF
        after = _covers(pages.written_runs(), address, whole)
        return 0 if before < 8 and after == whole // pages.PAGE else 1

    assert _in_child(child) == 0


def test_pages_copied_ahead_are_the_childs_own_with_the_same_bytes():
    data, address = _buffer(64)
    expected = bytes(data)
    whole = len(data) - pages.PAGE
    ours, theirs = socket.socketpair()

    def child() -> int:
        copied = pages.copy_ahead([(address - address % pages.PAGE + pages.PAGE, whole // pages.PAGE - 1)], theirs)
        if copied == 0:
            return 77  # a kernel without MADV_POPULATE_WRITE
        own = _covers(pages.written_runs(), address + pages.PAGE, whole - 2 * pages.PAGE)
        return 0 if own >= whole // pages.PAGE - 2 and bytes(data) == expected else 1

    code = _in_child(child)
    if code == 77:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux 5.14)")
    assert code == 0
    assert bytes(data) == expected  # the parent's copy is untouched too


def test_copying_ahead_stops_when_the_request_is_there():
    data, address = _buffer(8)
    ours, theirs = socket.socketpair()
    ours.sendall(b"J")  # the request has come
    assert pages.copy_ahead([(address - address % pages.PAGE + pages.PAGE, 4)], theirs) == 0


def test_the_list_is_kept_for_its_own_server_only(tmp_path):
    path = tmp_path / "w.pages"
    runs = [(0x7F0000000000, 3), (0x7F0000010000, 1)]
    pages.keep(path, 1234, runs)
    assert pages.kept(path, 1234) == runs
    assert pages.kept(path, 4321) == []  # another server: its addresses mean nothing here
    assert pages.kept(tmp_path / "none.pages", 1234) == []
    assert list(tmp_path.iterdir()) == [path]  # no scratch file left behind


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-5],  # cut short: a run half written
        lambda data: b"mbpages0" + data[8:],  # another format
        lambda data: data + b"\0" * 16,  # more runs than it says
        lambda data: b"",
    ],
)
def test_a_damaged_list_copies_nothing(tmp_path, damage):
    path = tmp_path / "w.pages"
    pages.keep(path, 1234, [(0x7F0000000000, 3)])
    path.write_bytes(damage(path.read_bytes()))
    assert pages.kept(path, 1234) == []


def test_a_list_beyond_the_cap_is_cut_at_the_cap(tmp_path):
    path = tmp_path / "w.pages"
    runs = [(0x7F0000000000 + i * 0x100000, 256) for i in range(pages.MAX_PAGES // 256 + 10)]
    pages.keep(path, 1234, runs)
    kept = pages.kept(path, 1234)
    assert sum(count for _, count in kept) <= pages.MAX_PAGES
    assert kept == runs[: len(kept)] and len(kept) == pages.MAX_PAGES // 256


def test_a_run_that_is_not_mapped_is_passed_over_and_the_rest_copied():
    data, address = _buffer(8)
    ours, theirs = socket.socketpair()
    first = address - address % pages.PAGE + pages.PAGE

    def child() -> int:
        copied = pages.copy_ahead([(pages.PAGE, 2), (first, 4)], theirs)  # page 1: never mapped
        return 77 if copied == 0 else (0 if copied == 4 else 1)

    code = _in_child(child)
    if code == 77:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux 5.14)")
    assert code == 0


def test_the_header_names_the_format_the_server_and_the_count(tmp_path):
    path = tmp_path / "w.pages"
    pages.keep(path, 42, [(4096, 2)])
    magic, pid, count = struct.unpack_from("<8sqq", path.read_bytes())
    assert (magic, pid, count) == (b"mbpages1", 42, 1)


def test_a_fifo_or_a_folder_in_place_of_the_list_copies_nothing_and_never_waits(tmp_path):
    fifo = tmp_path / "fifo.pages"
    os.mkfifo(fifo)  # nobody writes it: reading it plainly would wait forever
    assert pages.kept(fifo, 1234) == []
    (tmp_path / "folder.pages").mkdir()
    assert pages.kept(tmp_path / "folder.pages", 1234) == []
    real = tmp_path / "real.pages"
    pages.keep(real, 1234, [(4096, 1)])
    (tmp_path / "link.pages").symlink_to(real)
    assert pages.kept(tmp_path / "link.pages", 1234) == []  # a link is not followed


def test_runs_over_a_shared_file_mapping_are_cut_off(tmp_path):
    """Only private writable pages are ever listed; a forged run over a file mapped shared
    would have the kernel write the file back (its mtime changed in a helper's test)."""
    import ctypes
    import mmap

    shared = tmp_path / "shared.bin"
    shared.write_bytes(b"\0" * (4 * pages.PAGE))
    with open(shared, "r+b") as file, mmap.mmap(file.fileno(), 4 * pages.PAGE, mmap.MAP_SHARED) as mapped:
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        assert pages._inside_private_writable([(address, 4)]) == []
        data, private = _buffer(8)
        first = private - private % pages.PAGE + pages.PAGE
        assert pages._inside_private_writable([(address, 4), (first, 4), (first + 1, 1)]) == [(first, 4)]  # the unaligned run goes too
        del data


def test_a_list_that_cannot_be_written_leaves_no_scratch_file(tmp_path):
    (tmp_path / "w.pages").mkdir()  # something in the way of the rename
    with pytest.raises(OSError):
        pages.keep(tmp_path / "w.pages", 1234, [(4096, 1)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pages"]
