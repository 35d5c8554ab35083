"""Installed versions of the toolchain, read fast.

Stage keys, the warm server's identity and the no-op record all name the versions of torch,
coremltools, ExecuTorch and the rest. ``importlib.metadata.version`` searches every path entry
with a finder and parses the whole METADATA file: 4–7 ms per distribution, about 0.1 s of a
metadata-only rebuild that takes half a second. This reads the same file the same way round
(the first path entry that has the distribution wins, as for importlib.metadata) after one
directory listing per path entry, cached while the folder is unchanged; anything unusual (two
candidates in one folder, an egg, a zip) is left to importlib.metadata itself.
"""

from __future__ import annotations

import os
import re
import sys

# folder -> (its mtime_ns, {normalised distribution name: (its .dist-info entries, whether an egg names it)})
_LISTINGS: dict[str, tuple[int, dict[str, tuple[list[str], bool]]]] = {}


def installed_version(distribution: str) -> str:
    """The version of an installed distribution; "not installed" when there is none."""
    wanted = _normal(distribution)
    for entry in sys.path:
        found, egg = _listing(entry or ".").get(wanted, ([], False))
        if len(found) == 1:
            version = _version_in(os.path.join(entry or ".", found[0], "METADATA"))
            if version is not None:
                return version
        if found or egg:
            break  # ambiguous, unreadable or an egg: importlib.metadata decides
    return _slow(distribution)


def _slow(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _listing(folder: str) -> dict[str, tuple[list[str], bool]]:
    """The distributions a folder holds, by normalised name (normalising every entry once per
    listing, not once per question: a site-packages folder has hundreds)."""
    try:
        stamp = os.stat(folder).st_mtime_ns
    except OSError:
        return {}
    cached = _LISTINGS.get(folder)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    index: dict[str, tuple[list[str], bool]] = {}
    for name in names:
        if name.endswith(".dist-info"):
            index.setdefault(_normal(name[: -len(".dist-info")].split("-")[0]), ([], False))[0].append(name)
        elif name.endswith((".egg-info", ".egg", ".egg-link")):
            key = _normal(name.split("-")[0].split(".egg")[0])
            index[key] = (index.get(key, ([], False))[0], True)
    _LISTINGS[folder] = (stamp, index)
    return index


def _version_in(metadata_file: str) -> str | None:
    """The ``Version:`` header of a METADATA file (headers end at the first blank line)."""
    try:
        with open(metadata_file, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    return None
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
