"""A registry of named things (tasks, models) that fills itself on first lookup."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from spikessm.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by their ``.name``. ``load_builtins`` registers the built-in entries; it runs once,
    on the first lookup."""

    def __init__(self, kind: str, load_builtins: Callable[[], None]):
        self.kind, self._load_builtins, self._entries, self._loaded = kind, load_builtins, {}, False

    def register(self, entry: T) -> T:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} registered twice")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry, or a one-line UserError listing the valid names."""
        entries = self.all()
        if name not in entries:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(entries)}")
        return entries[name]

    def all(self) -> dict[str, T]:
        """Every entry, by name, sorted."""
        if not self._loaded:
            self._loaded = True
            self._load_builtins()
        return dict(sorted(self._entries.items()))
