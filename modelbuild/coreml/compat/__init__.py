"""Built-in compatibility conversions: fixes for patterns coremltools 9.0 with torch 2.13 cannot
convert, on by default, each one switched off with ``targets.coreml.compat.<name>: false``.

They use the mechanism ``plugins:`` uses (coremltools' torch-op registry, or a change to the
module before capture), so a user's plugin and a built-in one are the same kind of thing.
A new one: a module here with one ``Compat`` subclass, one line in BUILTIN.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator

from modelbuild.registry import Registry


class Compat:
    name: ClassVar[str]
    phase: ClassVar[str]  # "capture" (changes the module), "convert" or "optimize" (coremltools)
    fixes: ClassVar[str]  # the error or wrong result users meet without it
    does: ClassVar[str]  # what it does instead

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        """Active for the duration of a conversion (convert and optimize phases)."""
        yield

    @classmethod
    def before_script(cls, module: Any) -> list[str]:
        """Capture phase: change the module just before it is scripted; notes for the summary."""
        return []


COMPAT: Registry[Compat] = Registry("compatibility conversion")

BUILTIN = [
    "modelbuild.coreml.compat.resize_to_input",
    "modelbuild.coreml.compat.script_conv_bias",
    "modelbuild.coreml.compat.float16_pruning",
    "modelbuild.coreml.compat.transformers_ops",
]

COMPAT.load(BUILTIN)


def phase_switches(switches: dict[str, bool], phase: str) -> dict[str, bool]:
    """The switches of one phase: what a stage of that phase puts in its key, so that turning
    off a fix of another phase rebuilds nothing here."""
    return {name: switches.get(name, True) for name in COMPAT.names() if COMPAT.get(name).phase == phase}


def enabled(switches: dict[str, bool], phase: str) -> list[str]:
    """Names of the conversions of ``phase`` that are on (the default) in ``switches``."""
    return [name for name in COMPAT.names() if COMPAT.get(name).phase == phase and switches.get(name, True)]


@contextlib.contextmanager
def installed(names: list[str]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(COMPAT.get(name).installed())
        yield
