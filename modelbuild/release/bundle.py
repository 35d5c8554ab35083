"""``modelbuild release``: reproducible bundles an app can ship.

``dist/<model>-<version>/`` holds the artifacts (an ``.mlpackage`` also as a deterministic
``.mlpackage.zip``), ``provenance.json`` and ``SHA256SUMS``. Every byte is a function of the
inputs: zip entries sorted, timestamps from ``SOURCE_DATE_EPOCH`` (or 1980-01-01), fixed
permissions, no extra attributes; JSON with sorted keys. Benchmark timings are measurements,
so they go to ``<model>-<version>.bench.json`` beside the bundle: the bundle itself is
byte-identical as a whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from modelbuild.errors import IntegrityError, UserError
from modelbuild.manifest.spec import ModelSpec
from modelbuild.report import BuildReport, StageResult, Status, role_of
from modelbuild.stages import STAGES
from modelbuild.store.hashing import hash_tree
from modelbuild.store.objects import ObjectStore
from modelbuild.store.paths import inside, replace_file
from modelbuild.targets import TARGETS

ZIP_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry can carry


def zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", ZIP_EPOCH)), ZIP_EPOCH)
    return time.gmtime(epoch)[:6]


def deterministic_zip(folder: Path, destination: Path) -> None:
    """Zip a folder (an .mlpackage) so the bytes depend on its content only."""
    stamp = zip_time()
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder.parent).as_posix())
        for path in entries:
            name = path.relative_to(folder.parent).as_posix() + ("/" if path.is_dir() else "")
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3  # unix, so the permission bits below mean what they say
            info.external_attr = ((0o40755 if path.is_dir() else 0o100644) << 16) | (0x10 if path.is_dir() else 0)
            info.compress_type = zipfile.ZIP_STORED if path.is_dir() else zipfile.ZIP_DEFLATED
            archive.writestr(info, b"" if path.is_dir() else path.read_bytes(), compresslevel=9)


def tool_versions() -> dict[str, str]:
    from modelbuild.graph.keys import toolchain
    from modelbuild.stages.base import tool_version

    return {"python": platform.python_version(), **{name: tool_version(name) for name in toolchain()}}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(model: ModelSpec, results: dict[str, StageResult], store: ObjectStore) -> dict[str, Any]:
    """What the bundle came from: manifest content, source fingerprint, every stage key and
    output, tool versions, platform, and the verification figures."""
    manifest_path = Path(model.manifest)
    fingerprint_dir = store.path(results["source"].output) if "source" in results and results["source"].output else None
    fingerprint = json.loads((fingerprint_dir / "fingerprint.json").read_text()) if fingerprint_dir and (fingerprint_dir / "fingerprint.json").is_file() else {}
    return {
        "model": model.name,
        "version": model.data["version"],
        "manifest": {"file": manifest_path.name, "sha256": _sha256(manifest_path)},
        "source": fingerprint,
        "stages": {name: {"key": r.key, "output": r.output} for name, r in sorted(results.items()) if role_of(name) != "measure"},
        "tools": tool_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine()},
        # Whether a verify stage ran now or came from the cache is a fact about this machine's
        # cache, not about the bundle, so only the verdict and figures go in.
        "verify": {
            name.split(".")[0]: (
                {k: v for k, v in r.info.items() if k != "summary"} if r.status != Status.SKIPPED else {"verdict": "skipped", "reason": r.reason}
            )
            for name, r in sorted(results.items())
            if role_of(name) == "verify"
        },
    }


def write_bundle(model: ModelSpec, report: BuildReport, store: ObjectStore, out: Path) -> Path:
    """Write dist/<model>-<version>/ atomically (a temporary folder renamed into place).

    Every artifact is re-hashed against the digest its stage recorded before it is shipped
    (releases are rare; shipping a tampered cache entry is not). The bundle replaces only a
    previous bundle, never a folder modelbuild did not write.
    """
    results = {r.stage: r for r in report.results if r.model == model.name}
    folder = inside(out / f"{model.name}-{model.data['version']}", out, "a release bundle")
    if folder.exists() and not (folder / "provenance.json").is_file():
        raise UserError(f"--out: {folder} exists and is not a modelbuild release bundle (it has no provenance.json); move it away or choose another --out")
    beside = out / f"{folder.name}.bench.json"  # measurements: beside the bundle, never inside what SHA256SUMS covers
    if not _ours_or_absent(beside):
        raise UserError(
            f"--out: {beside} exists and is not modelbuild's measurements of this bundle (a JSON list of bench rows); move it away or choose another --out"
        )
    _confirm_artifacts(model, results, store)
    staging = out / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for target in sorted(model.data["targets"]):
        stage = TARGETS.get(target).artifact_stage()
        result = results.get(stage)
        if result is None or result.output is None:
            continue
        for index, pattern in enumerate(STAGES.get(stage).artifacts):
            name = pattern.format(model=model.name)
            source = store.path(result.output) / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
                deterministic_zip(source, staging / f"{name}.zip")
            elif source.is_file():
                shutil.copyfile(source, staging / name)
            elif index == 0:  # the main artifact (optional ones, like a .ptl, may be absent)
                shutil.rmtree(staging, ignore_errors=True)
                raise IntegrityError(
                    f"{model.name}: {stage}: the cache entry {result.output[:16]}… no longer holds {name}; run the release again to rebuild it"
                )
    (staging / "provenance.json").write_text(json.dumps(provenance(model, results, store), indent=2, sort_keys=True) + "\n")
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    sums = "".join(f"{_sha256(p)}  {p.relative_to(staging).as_posix()}\n" for p in files)
    (staging / "SHA256SUMS").write_text(sums)
    for path in [staging, *staging.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if folder.exists():
        old = out / f".{folder.name}.old-{os.getpid()}"
        os.replace(folder, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(staging, folder)
    timings = [dict(row, stage=name) for name, r in sorted(results.items()) if role_of(name) == "measure" for row in r.info.get("bench", [])]
    if timings:
        replace_file(beside, json.dumps(timings, indent=2, sort_keys=True) + "\n")
    else:
        beside.unlink(missing_ok=True)
    return folder


def _ours_or_absent(path: Path) -> bool:
    """Whether ``path`` may be replaced or removed: absent, a link (replaced, never written
    through), or a file modelbuild wrote there (a JSON list of rows naming their stage). A
    release without measurements removes the last one's, so old timings never sit beside new
    bytes; a file of the user's under that name is theirs."""
    if path.is_symlink() or not path.exists():
        return True
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(rows, list) and all(isinstance(row, dict) and "stage" in row for row in rows)


def _confirm_artifacts(model: ModelSpec, results: dict[str, StageResult], store: ObjectStore) -> None:
    for target in sorted(model.data["targets"]):
        result = results.get(TARGETS.get(target).artifact_stage())
        if result is None or result.output is None:
            continue
        found = hash_tree(store.path(result.output))
        if found != result.output:
            store.evict(result.output)
            raise IntegrityError(
                f"{model.name}: {result.stage}: the cache entry {result.output[:16]}… was altered after it was built "
                f"(its bytes hash to {found[:16]}…); it has been evicted: run the release again to rebuild it"
            )
