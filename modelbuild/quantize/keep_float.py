"""Which layers of an int8 model stay float: ``quantize.keep_float`` patterns matched against
module paths of the model as the manifest builds it (``features.0.0``, ``head``, ``blocks.*``).

Why a user needs it: the layers a quantised model loses most accuracy in are usually few and
known (the first convolution, which sees raw pixels through three channels, and the last
classifier), and on CPUs without int8 dot-product instructions some layers run slower in int8
than in float (measured on this project's machine: the 3-channel stem of MobileNet 1.6× slower
in ONNX Runtime's QLinearConv). Every quantisation toolkit has the switch
(``nodes_to_exclude`` in onnxruntime, a filter in the PT2E quantisers); this gives both one
spelling in the user's own module names.

A pattern that matches no module is an error, never silently nothing: a typo would otherwise
ship a model quantised exactly as before.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable

ROOT = "model"  # the capture wrapper's attribute that holds the model (torch_side/wrapper.py)


class Unmatched(ValueError):
    """A pattern matched no module: the message names it and modules that exist."""


def module_path(scope: str) -> str | None:
    """The user's path of a module given the wrapper's (``model.features.0`` → ``features.0``);
    None for the wrapper and the model's root."""
    return scope[len(ROOT) + 1 :] if scope.startswith(ROOT + ".") else None


class KeepFloat:
    """The patterns, and what they matched so far (for ``unmatched``)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = list(patterns)
        self.matched: set[int] = set()
        self.modules: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def keeps(self, scopes: Iterable[str]) -> bool:
        """Whether an operator inside these modules (the wrapper's paths, outermost first)
        stays float: some module it belongs to matches a pattern."""
        paths = [path for path in (module_path(scope) for scope in scopes) if path]
        self.modules.update(paths)
        hits = {index for index, pattern in enumerate(self.patterns) if any(fnmatchcase(path, pattern) for path in paths)}
        self.matched |= hits
        return bool(hits)

    def check(self) -> None:
        """Raise Unmatched when a pattern matched no module so far."""
        problem = self.unmatched()
        if problem:
            raise Unmatched(problem)

    def unmatched(self) -> str | None:
        """What to tell the user when a pattern matched no module, with modules that exist."""
        missing = [f"[{index}] {self.patterns[index]!r}" for index in range(len(self.patterns)) if index not in self.matched]
        if not missing:
            return None
        if not self.modules:
            return (
                f"{', '.join(missing)}: this graph names no modules (module names come from a torch.export capture; "
                "the build log says why the export fell back to another way), so nothing can be kept float: remove keep_float"
            )
        known = sorted(self.modules, key=lambda path: (path.count("."), path))[:12]
        return f"{', '.join(missing)} matches no module; modules here include {', '.join(known)}"
