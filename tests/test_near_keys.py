"""NearKeys: the piece index finds what a scan of every key finds, and follows evictions."""

from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from dispatch_core import ResultCache
from dispatch_core._near_keys import NearKeys, _by_closeness, _cuts

WORDS = "a red blue jacket hat portrait studio light dark forest city night cat dog".split()


def prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 9)))


def edited(key: str, edits: int, rng: random.Random, letters: str) -> str:
    """`key` after `edits` random insertions, replacements or deletions anywhere."""
    for _ in range(edits):
        at = rng.randrange(len(key) + 1)
        kind = rng.choice(("insert", "replace", "delete") if key else ("insert",))
        if kind == "insert":
            key = key[:at] + rng.choice(letters) + key[at:]
        else:
            at = min(at, len(key) - 1)
            replacement = rng.choice(letters) if kind == "replace" else ""
            key = key[:at] + replacement + key[at + 1 :]
    return key


def scanned(keys: list[str], asked: str, max_distance: int) -> tuple[str, int] | None:
    """The rule `nearest` keeps, by brute force: least distance, then nearest length (the
    shorter first), then the key stored first."""
    reach = _by_closeness(len(asked), max_distance)
    near = [
        (Levenshtein.distance(asked, k), reach.index(len(k)), n, k)
        for n, k in enumerate(keys)
        if len(k) in reach
    ]
    best = min(near, default=None)
    return None if best is None or best[0] > max_distance else (best[3], best[0])


@pytest.mark.parametrize("max_distance", [0, 1, 2, 3, 5])
def test_nearest_equals_a_scan_of_every_key(max_distance: int) -> None:
    rng = random.Random(max_distance)
    for _ in range(40):
        keys = list(dict.fromkeys(prompt(rng) for _ in range(150)))
        index = NearKeys(max_distance)
        for key in keys:
            index.add(key)
        for _ in range(10):
            asked = edited(rng.choice(keys), rng.randrange(max_distance + 3), rng, "abdes ")
            assert index.nearest(asked) == scanned(keys, asked, max_distance), asked


def test_short_keys_of_two_letters_equal_a_scan() -> None:
    """Keys shorter than their pieces count, where every key shares the empty piece."""
    rng = random.Random(3)
    for _ in range(200):
        max_distance = rng.randrange(5)
        keys = list(dict.fromkeys("".join(rng.choices("ab", k=rng.randrange(8))) for _ in range(9)))
        index = NearKeys(max_distance)
        for key in keys:
            index.add(key)
        asked = "".join(rng.choices("ab", k=rng.randrange(8)))
        assert index.nearest(asked) == scanned(keys, asked, max_distance)


def test_many_keys_sharing_pieces_are_scanned_with_the_same_answer() -> None:
    """A piece held by most keys of a length makes the lookup compare them all."""
    keys = [f"the same long prefix, then {n:05d}" for n in range(400)]
    index = NearKeys(3)
    for key in keys:
        index.add(key)
    for asked in ("the same long prefix, then 0012", "the same long prefix, then 00012!"):
        assert index.nearest(asked) == scanned(keys, asked, 3)


def test_ties_go_to_the_nearest_length_then_the_key_stored_first() -> None:
    index = NearKeys(2)
    for key in ("cat dog", "cat hog", "cat do", "cat dogs"):
        index.add(key)
    assert index.nearest("cat fog") == ("cat dog", 1)
    assert index.nearest("cat dox") == ("cat dog", 1)
    assert index.nearest("cat dogx") == ("cat dogs", 1)  # its own length before "cat dog"
    index.discard("cat dog")
    index.add("cat dog")  # stored again: now the last
    assert index.nearest("cat fog") == ("cat hog", 1)


def index_of(cache: ResultCache[int], namespace: str) -> NearKeys:
    return cache._keys[namespace]


def assert_indexes_exactly(index: NearKeys, live: set[str]) -> None:
    """Every live key is found under each of its pieces, and nothing else is held."""
    stored = {key for keys in index._by_length.values() for key in keys}
    assert stored == live and len(index) == len(live)
    held: set[str] = set()
    for holders in index._by_piece.values():
        held.update((holders,) if isinstance(holders, str) else holders)
    assert held == live
    for key in live:
        assert index.nearest(key) == (key, 0)


def test_eviction_keeps_the_index_to_the_live_keys() -> None:
    rng = random.Random(5)
    cache: ResultCache[int] = ResultCache(50, fuzzy=True, max_distance=3)
    for n in range(2000):
        cache.put("gen", prompt(rng), n)
        if n % 7 == 0:
            cache.get("gen", prompt(rng))  # refreshes some keys' recency
    live = {key for namespace, key in cache._entries}
    assert len(live) == 50
    assert_indexes_exactly(index_of(cache, "gen"), live)


def test_a_piece_held_by_many_keys_follows_them_in_and_out() -> None:
    """Their piece's holders grow from one key to a tuple to a set, and go with the last."""
    cache: ResultCache[int] = ResultCache(20, fuzzy=True, max_distance=3)
    shared = [f"one long start shared by all, then {n:03d}" for n in range(60)]
    for n, key in enumerate(shared):
        cache.put("gen", key, n)
        assert_indexes_exactly(index_of(cache, "gen"), set(shared[max(0, n - 19) : n + 1]))
    others = [f"{n:03d} something else entirely, on its own" for n in range(20)]
    for n, key in enumerate(others):
        cache.put("gen", key, n)
        kept = set(shared[41 + n :]) | set(others[: n + 1])
        assert_indexes_exactly(index_of(cache, "gen"), kept)


def test_clearing_then_reusing_keeps_the_index_consistent() -> None:
    cache: ResultCache[int] = ResultCache(3, fuzzy=True)
    for n, key in enumerate(("one", "two", "three", "one", "four")):
        cache.put("gen", key, n)
    assert_indexes_exactly(index_of(cache, "gen"), {"three", "one", "four"})
    cache.clear()
    cache.put("gen", "five", 5)
    assert_indexes_exactly(index_of(cache, "gen"), {"five"})


def test_discarding_a_key_never_stored_changes_nothing() -> None:
    index = NearKeys(2)
    index.add("a red hat")
    index.discard("a red cat")
    index.discard("a red hat!")
    assert_indexes_exactly(index, {"a red hat"})


def test_pieces_cover_the_key_in_order() -> None:
    assert _cuts(10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert _cuts(2, 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]
