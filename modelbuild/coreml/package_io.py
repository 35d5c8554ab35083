"""Reading and writing ``.mlpackage`` folders byte-reproducibly.

coremltools writes random UUIDs into ``Manifest.json``, a conversion date into the metadata,
and serialises protobuf maps in no fixed order. Here: protobuf with ``deterministic=True``,
item identifiers derived from each item's path and content, the date only from
``SOURCE_DATE_EPOCH``, and JSON with sorted keys.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from modelbuild.coreml.proto import model_pb2
from modelbuild.store.hashing import hash_tree

SPEC_PATH = Path("Data/com.apple.CoreML/model.mlmodel")
WEIGHTS_PATH = Path("Data/com.apple.CoreML/weights")
NAMESPACE = uuid.UUID("6f1d3c1e-6a55-4e0e-9a52-6d6f64656c62")  # modelbuild's fixed UUID namespace
DATE_KEY = "com.github.apple.coremltools.conversion_date"


def read_spec(package: Path) -> Any:
    """The spec of an ``.mlpackage`` folder, or of a bare ``.mlmodel`` file (neural networks
    are often saved that way)."""
    spec = model_pb2().Model()
    spec.ParseFromString((package if package.is_file() else package / SPEC_PATH).read_bytes())
    return spec


def write_package(spec: Any, weights_from: Path | None, dest: Path) -> None:
    """Write a package at ``dest`` (which must not exist) from a spec and a weights folder."""
    data = dest / "Data" / "com.apple.CoreML"
    data.mkdir(parents=True)
    (dest / SPEC_PATH).write_bytes(spec.SerializeToString(deterministic=True))
    items = {"com.apple.CoreML/model.mlmodel": ("model.mlmodel", "CoreML Model Specification", dest / SPEC_PATH)}
    if weights_from is not None and weights_from.is_dir() and any(weights_from.iterdir()):
        shutil.copytree(weights_from, dest / WEIGHTS_PATH)
        items["com.apple.CoreML/weights"] = ("weights", "CoreML Model Weights", dest / WEIGHTS_PATH)
    entries = {}
    root_id = None
    for path, (name, description, on_disk) in sorted(items.items()):
        identifier = str(uuid.uuid5(NAMESPACE, f"{path}\0{hash_tree(on_disk)}")).upper()
        entries[identifier] = {"author": "com.apple.CoreML", "description": description, "name": name, "path": path}
        if name == "model.mlmodel":
            root_id = identifier
    manifest = {"fileFormatVersion": "1.0.0", "itemInfoEntries": entries, "rootModelIdentifier": root_id}
    (dest / "Manifest.json").write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")


def rewrite_package(source: Path, dest: Path, edit: Any = None) -> Any:
    """Copy ``source`` to ``dest`` deterministically, applying ``edit(spec)`` on the way."""
    spec = read_spec(source)
    if edit is not None:
        edit(spec)
    write_package(spec, source / WEIGHTS_PATH, dest)
    return spec


def drop_conversion_date(spec: Any) -> None:
    user = spec.description.metadata.userDefined
    if DATE_KEY in user:
        del user[DATE_KEY]
