"""Copy ahead the memory pages a handed-over build will write, while the spare fork waits.

A fork shares the warm server's memory until it writes to it; the first write to each page
copies it (copy-on-write). Python writes wherever it looks: a reference count changes when a
function, a module dict or a string is used. A metadata-only rebuild in a fork of a server
holding torch, coremltools and ExecuTorch copies about 6,000 pages this way, at 3 µs each
here: 18 ms, a sixth of the build.

Builds of one project touch much the same pages. So a handed-over build, once its client
has the answer, lists the pages it made its own (``/proc/self/pagemap``: present and mapped
by this process alone) and keeps the list beside the server's socket; the next spare asks the
kernel to copy those pages (``madvise(MADV_POPULATE_WRITE)``, Linux 5.14) before its request
comes. That copies without writing: the memory's content is the server's, byte for byte, so
nothing a build computes can change. The list names the server it was made in (addresses
differ from one server to the next), is capped in size, and anything wrong with it (another
kernel, another system, a damaged file) means no pages copied ahead, nothing more.
"""

from __future__ import annotations

import bisect
import os
import re
import select
import socket
import struct
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MAX_PAGES = 32768  # 128 MB of 4 KB pages: a list beyond this is not what a build's fork touches
_LARGEST_MAPPING = 1 << 30
_MINE = bytes(1 if byte & 0x81 == 0x81 else 0 for byte in range(256))
_RUNS = re.compile(b"\x01+")
_MADV_POPULATE_WRITE = 23
_HEADER = struct.Struct("<8sqq")  # magic, the server's pid, the number of runs
_MAGIC = b"mbpages1"
_RUN = struct.Struct("<QQ")  # first address, number of pages


def written_runs() -> list[tuple[int, int]]:
    """(first address, pages) of each run of private writable pages this process holds alone:
    those it copied from its parent or filled itself."""
    runs: list[tuple[int, int]] = []
    total = 0
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        for start, end in _private_writable_mappings():
            if end - start > _LARGEST_MAPPING:  # a reserved arena, not the interpreter's heap: its map alone would be megabytes
                continue
            pagemap.seek(start // PAGE * 8)
            # An entry is 64 bits, little-endian: its last byte holds "present" (bit 63) and
            # "mapped by this process alone" (bit 56). One character per page, runs by regex.
            flags = pagemap.read((end - start) // PAGE * 8)[7::8].translate(_MINE)
            for run in _RUNS.finditer(flags):
                runs.append((start + run.start() * PAGE, run.end() - run.start()))
                total += run.end() - run.start()
            if total > MAX_PAGES:
                break
    return runs


def _private_writable_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's private writable mappings (``rw-p`` in /proc/self/maps)."""
    mappings = []
    with open("/proc/self/maps", "rb") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 2 and fields[1] == b"rw-p":
                start, end = (int(part, 16) for part in fields[0].split(b"-"))
                mappings.append((start, end))
    return mappings


def keep(path: Path, server_pid: int, runs: list[tuple[int, int]]) -> None:
    """Write the list for the next spare of ``server_pid`` (replaced whole: a spare never reads half of one)."""
    body = b"".join(_RUN.pack(first, count) for first, count in runs)
    scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        scratch.write_bytes(_HEADER.pack(_MAGIC, server_pid, len(runs)) + body)
        os.replace(scratch, path)
    except OSError:
        scratch.unlink(missing_ok=True)  # a full disk, a folder in the way: no scratch file left behind
        raise


def kept(path: Path, server_pid: int) -> list[tuple[int, int]]:
    """The list made in a fork of ``server_pid``; empty when there is none or it is another server's."""
    try:
        data = _read_regular_file(path, _HEADER.size + MAX_PAGES * _RUN.size)
        magic, pid, count = _HEADER.unpack_from(data)
        if magic != _MAGIC or pid != server_pid or len(data) != _HEADER.size + count * _RUN.size:
            return []
        runs = [_RUN.unpack_from(data, _HEADER.size + i * _RUN.size) for i in range(count)]
    except (OSError, struct.error):
        return []
    pages = 0
    capped = []
    for first, count in runs:
        if pages + count > MAX_PAGES:
            break
        capped.append((first, count))
        pages += count
    return capped


def _inside_private_writable(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``runs`` that lie in this process's private writable mappings, page-aligned.
    A list is only ever made of such pages; a run reaching into a shared file mapping would have
    the kernel mark the file's pages dirty (and write them back), so it is cut off here."""
    mappings = sorted(_private_writable_mappings())
    starts = [start for start, _ in mappings]
    inside = []
    for first, count in runs:
        if first % PAGE or count <= 0:
            continue
        last = first + count * PAGE
        index = max(bisect.bisect_right(starts, first) - 1, 0)
        while index < len(mappings) and mappings[index][0] < last:
            low, high = max(first, mappings[index][0]), min(last, mappings[index][1])
            if low < high:
                inside.append((low, (high - low) // PAGE))
            index += 1
    return inside


def _read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes: a FIFO or a
    device put there would otherwise keep the spare waiting, and so every build it should take."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return b""
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(limit + 1)
    finally:
        os.close(fd)


def copy_ahead(runs: list[tuple[int, int]], channel: socket.socket) -> int:
    """Copy the pages of ``runs`` into this process, a run at a time, stopping as soon as
    ``channel`` has something to read (the request is worth more than the pages). The
    number of pages copied; 0 where the kernel cannot (before Linux 5.14, another system)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return 0
    copied = 0
    for first, count in _inside_private_writable(runs):
        if select.select([channel], [], [], 0)[0]:
            break
        if madvise(first, count * PAGE, _MADV_POPULATE_WRITE) == 0:
            copied += count
        elif ctypes.get_errno() == 22:  # EINVAL: this kernel has no MADV_POPULATE_WRITE
            break
        # ENOMEM, EFAULT: a run no longer mapped, or not writable here; the others still count
    return copied
