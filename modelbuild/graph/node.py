"""Frozen, plain-data stage nodes: what the planner hands the executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageNode:
    """One stage of one model.

    ``params`` and ``files`` are the declared key material (resolved manifest values and the
    files whose content counts); ``context`` is what the stage needs to run but must not make
    it stale (where the manifest lives, field locations for messages, display names).
    """

    model: str
    stage: str
    params: dict[str, Any]
    files: dict[str, str]
    deps: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return node_id(self.model, self.stage)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "stage": self.stage, "params": self.params, "files": self.files, "deps": list(self.deps), "context": self.context}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "StageNode":
        return cls(raw["model"], raw["stage"], raw["params"], raw["files"], tuple(raw["deps"]), raw["context"])


def node_id(model: str, stage: str) -> str:
    return f"{model}:{stage}"
