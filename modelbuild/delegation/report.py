"""The delegation report every runtime fills the same way, and its words."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LOW_SHARE = 0.9  # below this share of the estimated FLOPs, the summary says so


@dataclass
class LeftOut:
    """One operator kind that runs outside the delegate."""

    op: str
    count: int
    where: list[str] = field(default_factory=list)  # source lines (project-relative), at most 3


@dataclass
class Delegation:
    runtime: str
    backend: str
    ops_total: int = 0
    ops_delegated: int = 0
    flops_total: float = 0.0
    flops_delegated: float = 0.0
    partitions: int = 0
    left_out: list[LeftOut] = field(default_factory=list)
    fused: dict[str, int] = field(default_factory=dict)  # ONNX Runtime: op kinds its optimizer made
    notes: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.ops_delegated / self.ops_total if self.ops_total else 1.0

    @property
    def flops_share(self) -> float:
        return self.flops_delegated / self.flops_total if self.flops_total else self.share

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["share"] = round(self.share, 4)
        data["flops_share"] = round(self.flops_share, 4)
        return data

    def low(self) -> bool:
        return self.flops_share < LOW_SHARE or self.share < LOW_SHARE

    def sentence(self) -> str:
        """One line for the summary and bench.md."""
        flops = f" ({self.flops_share:.0%} of estimated FLOPs)" if self.flops_total else ""
        partitions = f", in {self.partitions} partition{'s' if self.partitions != 1 else ''}" if self.partitions > 1 else ""
        text = f"{self.share:.0%} of operators{flops} run in {self.backend}{partitions}"
        if self.fused:
            text += "; the optimizer made " + ", ".join(f"{op} ×{count}" for op, count in self.fused.items())
        if self.left_out:
            # Operators from one place (a decomposition's helpers, a padding's slices) name it once.
            places: dict[str, list[str]] = {}
            for item in self.left_out[:4]:
                places.setdefault(item.where[0] if item.where else "", []).append(f"{item.op} ×{item.count}")
            shown = "; ".join(", ".join(ops) + (f" ({where})" if where else "") for where, ops in places.items())
            more = f" and {len(self.left_out) - 4} more" if len(self.left_out) > 4 else ""
            text += f"; outside it: {shown}{more}"
        return text


def from_json(data: dict[str, Any]) -> Delegation:
    fields = {k: v for k, v in data.items() if k not in ("share", "flops_share", "left_out")}
    return Delegation(**fields, left_out=[LeftOut(**item) for item in data.get("left_out", [])])
