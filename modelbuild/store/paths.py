"""The file-tree helpers the store, the executor, the stages and the release writer share."""

from __future__ import annotations

import shutil
from pathlib import Path

OUT_MARKER = ".modelbuild"  # in out_dir: this folder is modelbuild's to replace and to clean


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (an .mlpackage); 0 when it is gone."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def remove(path: Path) -> None:
    """Remove a file or a folder, whichever it is, if it is there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def inside(path: Path, folder: Path, what: str) -> Path:
    """``path`` if it stays inside ``folder`` (symlinks followed); a writer calls this before it
    writes or replaces anything, so no manifest value can make modelbuild touch a file
    elsewhere."""
    from modelbuild.errors import UserError

    resolved, base = path.resolve(), folder.resolve()
    if resolved != base and base not in resolved.parents:
        raise UserError(f"refusing to write {what} at {path}: it resolves to {resolved}, outside {base}")
    return path


def claim_out_dir(out_dir: Path) -> None:
    """Mark out_dir as modelbuild's before writing into it. A folder that already holds other
    files, written by someone else, is refused rather than taken over (``clean`` deletes
    out_dir as a whole)."""
    from modelbuild.errors import UserError

    marker = out_dir / OUT_MARKER
    if marker.is_file():
        return
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "report.json").is_file():
        raise UserError(
            f"out_dir {out_dir} already holds files modelbuild did not write (it has no {OUT_MARKER} marker); "
            "choose another out_dir in the project settings, or empty it"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("This folder is written by modelbuild; `modelbuild clean` removes it.\n")
    except OSError as exc:
        raise UserError(f"cannot write to out_dir {out_dir}: {exc.strerror}") from None
