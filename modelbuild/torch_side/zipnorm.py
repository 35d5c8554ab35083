"""Make torch's zip archives (``torch.jit.save``, ``torch.export.save``) byte-reproducible.

torch writes ``.data/serialization_id``: a crc of the records followed by a random number.
Everything else in the archive is already deterministic, so we overwrite the random digits
with zeros in place and fix that record's CRC-32 in both zip headers. Editing in place keeps
torch's 64-byte record alignment, which rewriting the archive with ``zipfile`` would lose.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

RECORD = ".data/serialization_id"


def normalize_torch_zip(path: Path) -> bool:
    """Zero the random part of the serialization id; return whether anything changed."""
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if i.filename.endswith(RECORD)]
        if not infos:
            return False
        info = infos[0]
        if info.compress_type != zipfile.ZIP_STORED:
            return False
        old = archive.read(info)
    text = old.decode("ascii", "replace")
    half = len(text) // 2
    new = (text[:half] + "0" * (len(text) - half)).encode("ascii")
    if new == old:
        return False
    data = bytearray(path.read_bytes())
    local = info.header_offset
    name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
    start = local + 30 + name_len + extra_len
    assert bytes(data[start:start + len(old)]) == old, "unexpected zip layout"
    data[start:start + len(old)] = new
    old_crc, new_crc = struct.pack("<I", info.CRC), struct.pack("<I", zlib.crc32(new) & 0xFFFFFFFF)
    _replace_at(data, local + 14, old_crc, new_crc)
    central = _find_central_entry(data, info.filename.encode())
    _replace_at(data, central + 16, old_crc, new_crc)
    path.write_bytes(bytes(data))
    return True


def _replace_at(data: bytearray, offset: int, old: bytes, new: bytes) -> None:
    if bytes(data[offset:offset + 4]) == old:
        data[offset:offset + 4] = new


def _find_central_entry(data: bytearray, name: bytes) -> int:
    position = len(data)
    while True:
        position = data.rfind(b"PK\x01\x02", 0, position)
        if position < 0:
            raise ValueError("zip central directory entry not found")
        name_len = struct.unpack_from("<H", data, position + 28)[0]
        if bytes(data[position + 46:position + 46 + name_len]) == name:
            return position
