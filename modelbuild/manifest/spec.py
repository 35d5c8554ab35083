"""A validated model manifest with its defaults applied: the planner's only input."""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any

from modelbuild.errors import Location


@dataclass(frozen=True)
class ModelSpec:
    """One model of one manifest file.

    ``data`` is the resolved manifest tree: project defaults merged under it, then built-in
    defaults filled in, so an explicit default and an omitted field are the same data (and
    so the same stage keys).
    """

    name: str
    data: dict[str, Any]
    manifest: Path
    display: str  # the manifest path as the user should read it (relative to the project)
    prefix: str  # "models[2]" when the model came from a models: list, else ""
    lines: dict[str, int] = field(default_factory=dict, compare=False)
    root: Path = Path(".")  # the project root: on sys.path while the model builds
    overlay: str = ""  # "variants.int8" for a variant: its own fields are cited there

    @property
    def folder(self) -> Path:
        return self.manifest.parent

    def where(self, field_path: str) -> Location:
        """The location of a field, with the line number when the format has lines."""
        if self.overlay and field_path:
            # A variant's field is cited where the variant sets it, when it does.
            inner = f"{self.overlay}.{field_path}"
            probe: str | None = inner
            while probe and probe.startswith(self.overlay + "."):
                if (f"{self.prefix}.{probe}" if self.prefix else probe) in self.lines:
                    return ModelSpec.where(dataclass_replace(self, overlay=""), probe)
                probe = _parent(probe)
        full = f"{self.prefix}.{field_path}" if self.prefix and field_path else (self.prefix or field_path)
        line = None
        probe = full
        full = full.removesuffix("#key")
        while probe is not None:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = _parent(probe)
        return Location(self.display, line, full)

    def resolve_path(self, relative: str) -> Path:
        return (self.folder / relative).resolve()


def _parent(path: str) -> str | None:
    if not path:
        return None
    if path.endswith("#key"):
        return path[: -len("#key")]
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""
