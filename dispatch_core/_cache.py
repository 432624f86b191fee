"""Results by explicit key, per workflow type: exact, or fuzzy within a few edits (LRU)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._near_keys import NearKeys

__all__ = ["CacheHit", "ResultCache"]

V = TypeVar("V")


@dataclass(frozen=True)
class CacheHit(Generic[V]):
    """A cached value, the key it was stored under, and how many edits away the asked key was."""

    value: V
    key: str
    distance: int


class ResultCache(Generic[V]):
    """An LRU of results; a fuzzy lookup finds the nearest key of the same namespace."""

    def __init__(self, max_entries: int = 500, *, fuzzy: bool = False, max_distance: int = 3):
        if max_entries < 0 or max_distance < 0:  # a negative size made put() pop an empty dict
            raise ValueError(
                f"max_entries and max_distance must be 0 or more, not {max_entries}, {max_distance}"
            )
        self.max_entries = max_entries
        self.fuzzy = fuzzy
        self._max_distance = max_distance
        self._entries: OrderedDict[tuple[str, str], V] = OrderedDict()
        self._keys: dict[str, NearKeys] = {}

    @property
    def max_distance(self) -> int:
        """The most edits a fuzzy hit may be away from the asked key."""
        return self._max_distance

    @max_distance.setter
    def max_distance(self, distance: int) -> None:
        """Rebuilds the index of each namespace, whose pieces depend on the distance (ties
        then go to the key used longest ago, the order the index is refilled in)."""
        if distance < 0:
            raise ValueError(f"max_distance must be 0 or more, not {distance}")
        self._max_distance = distance
        self._keys.clear()
        for namespace, key in self._entries:
            self._keys_of(namespace).add(key)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, namespace: str, key: str) -> CacheHit[V] | None:
        found, distance = key, 0
        if (namespace, key) not in self._entries:
            if not self.fuzzy:
                return None
            match = self._nearest(namespace, key)
            if match is None:
                return None
            found, distance = match
        self._entries.move_to_end((namespace, found))
        return CacheHit(self._entries[(namespace, found)], found, distance)

    def _nearest(self, namespace: str, key: str) -> tuple[str, int] | None:
        keys = self._keys.get(namespace)
        return None if keys is None else keys.nearest(key)

    def put(self, namespace: str, key: str, value: V) -> None:
        self._entries[(namespace, key)] = value
        self._entries.move_to_end((namespace, key))
        self._keys_of(namespace).add(key)
        while len(self._entries) > self.max_entries:
            (old_namespace, old_key), _ = self._entries.popitem(last=False)
            self._keys[old_namespace].discard(old_key)

    def _keys_of(self, namespace: str) -> NearKeys:
        keys = self._keys.get(namespace)
        if keys is None:
            keys = self._keys[namespace] = NearKeys(self._max_distance)
        return keys

    def clear(self) -> None:
        self._entries.clear()
        self._keys.clear()
