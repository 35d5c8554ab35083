"""A small generic registry: the one extension mechanism for stages, targets, runtimes and
compatibility conversions.

Classes register under their ``name`` attribute; duplicates are rejected so two modules can
never silently shadow each other, a miss is a ``UserError`` that suggests the closest name,
and ``override`` swaps an entry for the length of a ``with`` block (tests use it to inject
fake stages). ``load`` imports the modules that register the built-ins; a ``derive`` hook
makes entries that follow from others on first use (every target's ``.verify`` and
``.bench`` stages), so no module has to be imported last.
"""

from __future__ import annotations

import difflib
import importlib
from contextlib import contextmanager
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from modelbuild.errors import UserError

T = TypeVar("T")


class UnknownName(UserError, KeyError):
    """A name no registry entry has (a KeyError too, for code that asks with ``in`` first)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, derive: Callable[[str], "type[T] | None"] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, type[T]] = {}
        self._derive = derive

    def load(self, modules: Iterable[str]) -> None:
        """Import the modules whose classes register here (the built-ins, one line each)."""
        for module in modules:
            importlib.import_module(module)

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: register ``cls`` under ``cls.name``."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__} needs a non-empty string 'name' to be a {self.kind}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice: {self._entries[name].__qualname__} and {cls.__qualname__}")
        self._entries[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        entry = self._entries.get(name) or self._derived(name)
        if entry is None:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownName(f"unknown {self.kind} {name!r}{hint}")
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or self._derived(name) is not None)

    def _derived(self, name: str) -> type[T] | None:
        if self._derive is None:
            return None
        cls = self._derive(name)
        if cls is not None and name not in self._entries:
            self.register(cls)
        return cls

    @contextmanager
    def override(self, cls: type[T]) -> Iterator[None]:
        """Replace (or add) the entry named ``cls.name`` until the block ends. Entries derived
        meanwhile (a fake target's ``.verify`` stage) go too: they followed from the override."""
        saved = dict(self._entries)
        self._entries[cls.name] = cls  # type: ignore[attr-defined]
        try:
            yield
        finally:
            self._entries = saved


class FunctionTable:
    """Functions registered by name, one decorator line each: the MIL ops and NeuralNetwork
    layers the Linux executors implement. A name registered twice is an error, so two
    modules can never silently shadow each other; a name missing is the caller's to report
    (the executors name the op or layer and the package, never compute zeros)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.entries: dict[str, Callable[..., object]] = {}

    def implements(self, *names: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def register(function: Callable[..., T]) -> Callable[..., T]:
            for name in names:
                if name in self.entries:
                    raise ValueError(f"{self.kind} {name!r} is implemented twice")
                self.entries[name] = function
            return function

        return register

    def markdown(self, intro: str, families: dict[str, str], column: str) -> str:
        """A docs page: ``intro``, then one table row per family (the module a function lives
        in, titled by ``families``) listing its names."""
        grouped: dict[str, list[str]] = {}
        for name in sorted(self.entries):
            grouped.setdefault(self.entries[name].__module__.rsplit(".", 1)[1], []).append(name)
        lines = [intro, f"| family | {column} |", "| --- | --- |"]
        for module, title in families.items():
            lines.append(f"| {title} | " + ", ".join(f"`{name}`" for name in grouped.get(module, [])) + " |")
        return "\n".join(lines) + "\n"
