"""The keys of one cache namespace, indexed so that a fuzzy lookup compares a few of them.

Why it finds every match (the pigeonhole principle): a stored key is cut into
`max_distance + 1` pieces at fixed places that depend only on its length. An edit
touches at most one piece, so a key within `max_distance` edits of the asked key keeps
at least one piece whole, and that piece appears in the asked key shifted by the
insertions minus the deletions made before it. A lookup reads the asked key's
substrings at each possible shift, takes the stored keys indexed under them, and
computes the edit distance to those alone; the keys sharing no piece are too far.

Pieces are indexed by their hash, not their text, to keep the index small: a collision
only adds a candidate, which the distance then rules out.
"""

from __future__ import annotations

import itertools

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

__all__ = ["NearKeys"]

Holders = str | tuple[str, ...] | set[str]
"""The keys holding one piece: most pieces have one; a few keys go in a tuple, since
even an empty set takes 216 bytes; many in a set, which a key leaves in constant time."""
_FEW = 8

# Past this share of a length's keys, a candidate list costs more to build than a
# scan of all of them (rapidfuzz compares in C; the candidates are gathered in Python).
_SCAN_SHARE = 4


class NearKeys:
    """Keys by length and by piece; `nearest` is exact: the least edit distance within
    `max_distance`, ties going to the nearest length, then to the key stored first."""

    def __init__(self, max_distance: int):
        self.max_distance = max_distance
        # length → key → its place in the order of storing, which breaks ties
        self._by_length: dict[int, dict[str, int]] = {}
        # hash of (length, piece number, piece) → the key, or the keys, holding it
        self._by_piece: dict[int, Holders] = {}
        self._stored = 0

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_length.values())

    def add(self, key: str) -> None:
        same_length = self._by_length.setdefault(len(key), {})
        if key in same_length:
            return
        same_length[key] = self._stored
        self._stored += 1
        for piece in self._pieces(key):
            self._by_piece[piece] = _joined(self._by_piece.get(piece), key)

    def discard(self, key: str) -> None:
        same_length = self._by_length.get(len(key), {})
        if same_length.pop(key, None) is None:
            return
        if not same_length:
            del self._by_length[len(key)]
        for piece in self._pieces(key):
            left = _left(self._by_piece.get(piece), key)
            if left is None:
                self._by_piece.pop(piece, None)
            else:
                self._by_piece[piece] = left

    def nearest(self, key: str) -> tuple[str, int] | None:
        """The nearest lengths go first, so that a close match found early tightens the
        cutoff and spares the lengths further away."""
        best: tuple[str, int] | None = None
        for length in _by_closeness(len(key), self.max_distance):
            cutoff = self.max_distance if best is None else best[1] - 1
            if length in self._by_length and abs(length - len(key)) <= cutoff:
                match = self._nearest_of_length(key, length, cutoff)
                best = match or best
        return best

    def _nearest_of_length(self, key: str, length: int, cutoff: int) -> tuple[str, int] | None:
        same_length = self._by_length[length]
        candidates = self._candidates(key, length, cutoff, len(same_length) // _SCAN_SHARE)
        if candidates is None:  # too many to be worth gathering: compare every key
            choices: list[str] = list(same_length)
        else:
            choices = sorted(
                (c for c in candidates if c in same_length), key=same_length.__getitem__
            )
        match = process.extractOne(key, choices, scorer=Levenshtein.distance, score_cutoff=cutoff)
        return None if match is None else (match[0], int(match[1]))

    def _candidates(self, key: str, length: int, cutoff: int, most: int) -> set[str] | None:
        """The stored keys of `length` sharing a piece with `key` where `cutoff` edits
        could have moved it; None once more than `most` were found."""
        found: set[str] = set()
        for number, (start, end) in enumerate(_cuts(length, self.max_distance + 1)):
            for begin in _shifted_starts(start, len(key) - length, cutoff):
                if 0 <= begin and begin + end - start <= len(key):
                    piece = key[begin : begin + end - start]
                    holders = self._by_piece.get(hash((length, number, piece)))
                    if isinstance(holders, str):
                        found.add(holders)
                    elif holders:
                        found.update(holders)
                        if len(found) > most:
                            return None
        return found

    def _pieces(self, key: str) -> list[int]:
        cuts = _cuts(len(key), self.max_distance + 1)
        return [
            hash((len(key), number, key[start:end])) for number, (start, end) in enumerate(cuts)
        ]


def _joined(holders: Holders | None, key: str) -> Holders:
    if holders is None or holders == key:
        return key
    if isinstance(holders, str):
        return (holders, key)
    if isinstance(holders, tuple):
        if key in holders:
            return holders
        return (*holders, key) if len(holders) < _FEW else {*holders, key}
    holders.add(key)
    return holders


def _left(holders: Holders | None, key: str) -> Holders | None:
    """`holders` without `key`; None once no key is left."""
    if holders is None or holders == key:
        return None
    if isinstance(holders, str):
        return holders  # another key's piece of the same hash
    if isinstance(holders, tuple):
        rest = tuple(h for h in holders if h != key)
        return rest[0] if len(rest) == 1 else (rest or None)
    holders.discard(key)
    return holders or None


def _cuts(length: int, count: int) -> list[tuple[int, int]]:
    """`count` pieces of a key of `length`, as even as can be (some empty if it is short)."""
    places = [number * length // count for number in range(count + 1)]
    return list(itertools.pairwise(places))


def _shifted_starts(start: int, growth: int, cutoff: int) -> range:
    """Where a piece starting at `start` can start after `cutoff` edits that make the key
    `growth` longer: a shift s before it and growth - s after it cost |s| + |growth - s|."""
    lowest = min(0, growth) - (cutoff - abs(growth)) // 2
    highest = max(0, growth) + (cutoff - abs(growth)) // 2
    return range(start + lowest, start + highest + 1)


def _by_closeness(length: int, reach: int) -> list[int]:
    """`length`, then `length ± 1`, … up to `length ± reach`."""
    order = [length]
    for step in range(1, reach + 1):
        order += [length - step, length + step]
    return order
