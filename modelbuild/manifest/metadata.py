"""What ``metadata`` says about a model that several stages read (the planner, the Core ML
conversion and packaging): kept with the manifest, not with one target's code."""

from __future__ import annotations

from modelbuild.manifest.spec import ModelSpec


def class_labels(model: ModelSpec) -> list[str] | None:
    """``metadata.classes``, or the lines of ``metadata.classes_file``; None when neither."""
    meta = model.data["metadata"]
    if "classes" in meta:
        return [str(c) for c in meta["classes"]]
    if "classes_file" in meta:
        text = model.resolve_path(meta["classes_file"]).read_text(encoding="utf-8")
        return [line.strip() for line in text.splitlines() if line.strip()]
    return None
