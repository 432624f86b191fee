"""Results by explicit key, per workflow type: exact, or fuzzy within a few edits (LRU)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

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
        self.max_distance = max_distance
        self._entries: OrderedDict[tuple[str, str], V] = OrderedDict()
        # namespace → key length → {key: key} (rapidfuzz scores a dict's values)
        self._keys: dict[str, dict[int, dict[str, str]]] = {}

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
        """Only keys within `max_distance` of the length can be that close: skip the rest.
        The nearest lengths go first, so that a close match found early tightens the
        cutoff and spares the buckets further away."""
        buckets = self._keys.get(namespace, {})
        best: tuple[str, int] | None = None
        for length in _by_closeness(len(key), self.max_distance):
            choices = buckets.get(length)
            if not choices:
                continue
            cutoff = self.max_distance if best is None else best[1] - 1
            if cutoff < abs(length - len(key)):
                continue
            match = process.extractOne(
                key, choices, scorer=Levenshtein.distance, score_cutoff=cutoff
            )
            if match is not None:
                best = (match[2], int(match[1]))
        return best

    def put(self, namespace: str, key: str, value: V) -> None:
        self._entries[(namespace, key)] = value
        self._entries.move_to_end((namespace, key))
        self._keys.setdefault(namespace, {}).setdefault(len(key), {})[key] = key
        while len(self._entries) > self.max_entries:
            (old_namespace, old_key), _ = self._entries.popitem(last=False)
            del self._keys[old_namespace][len(old_key)][old_key]

    def clear(self) -> None:
        self._entries.clear()
        self._keys.clear()


def _by_closeness(length: int, reach: int) -> list[int]:
    """`length`, then `length ± 1`, … up to `length ± reach`."""
    order = [length]
    for step in range(1, reach + 1):
        order += [length - step, length + step]
    return order
