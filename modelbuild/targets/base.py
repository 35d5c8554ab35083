"""A target is a chain of stages after ``capture`` that ends in one shipped artifact."""

from __future__ import annotations

from typing import ClassVar


class Target:
    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]  # in order; the last one writes the artifact
