"""A small generic registry: the one extension mechanism for stages and targets.

Classes register under their ``name`` attribute; duplicates are rejected so two modules can
never silently shadow each other, a miss suggests the closest name, and ``override`` swaps an
entry for the length of a ``with`` block (tests use it to inject fake stages).
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type[T]] = {}

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
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @contextmanager
    def override(self, cls: type[T]) -> Iterator[None]:
        """Replace (or add) the entry named ``cls.name`` until the block ends."""
        name = cls.name  # type: ignore[attr-defined]
        previous = self._entries.get(name)
        self._entries[name] = cls
        try:
            yield
        finally:
            if previous is None:
                del self._entries[name]
            else:
                self._entries[name] = previous
