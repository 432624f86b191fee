"""ResultCache: exact and fuzzy hits per namespace, least recently used evicted first."""

from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from dispatch_core import ResultCache
from dispatch_core._cache import CacheHit

PROMPT = "a red jacket, studio light"


def fuzzy_cache(max_distance: int = 3) -> ResultCache[str]:
    return ResultCache(10, fuzzy=True, max_distance=max_distance)


def test_an_exact_hit_has_distance_zero() -> None:
    cache: ResultCache[str] = ResultCache(10)
    cache.put("gen", PROMPT, "result")
    assert cache.get("gen", PROMPT) == CacheHit("result", PROMPT, 0)


def test_a_miss_is_none() -> None:
    assert ResultCache[str](10).get("gen", PROMPT) is None


def test_a_fuzzy_hit_reports_the_stored_key_and_the_distance() -> None:
    cache = fuzzy_cache()
    cache.put("gen", PROMPT, "result")
    assert cache.get("gen", "a red jacket, studio lights") == CacheHit("result", PROMPT, 1)


def test_a_fuzzy_hit_at_exactly_max_distance() -> None:
    cache = fuzzy_cache(max_distance=2)
    cache.put("gen", PROMPT, "result")
    hit = cache.get("gen", "a red jacket, studio lightsss"[:-1])
    assert hit is not None and hit.distance == 2


def test_a_key_beyond_max_distance_misses() -> None:
    cache = fuzzy_cache(max_distance=3)
    cache.put("gen", PROMPT, "result")
    assert cache.get("gen", "a red jacket, studio lights!!!") is None  # 4 edits
    assert cache.get("gen", "a blue jacket, night light") is None


def test_a_changed_max_distance_applies_to_the_keys_already_stored() -> None:
    cache = fuzzy_cache(max_distance=1)
    cache.put("gen", PROMPT, "result")
    assert cache.get("gen", PROMPT + "!!") is None
    cache.max_distance = 2
    assert cache.get("gen", PROMPT + "!!") == CacheHit("result", PROMPT, 2)
    cache.max_distance = 0
    assert cache.get("gen", PROMPT + "!") is None and cache.get("gen", PROMPT) is not None
    with pytest.raises(ValueError, match="must be 0 or more"):
        cache.max_distance = -1


def test_no_fuzzy_hit_when_fuzzy_is_off() -> None:
    cache: ResultCache[str] = ResultCache(10, fuzzy=False, max_distance=3)
    cache.put("gen", PROMPT, "result")
    assert cache.get("gen", "a red jacket, studio lights") is None


def test_max_distance_zero_is_exact_only() -> None:
    cache = fuzzy_cache(max_distance=0)
    cache.put("gen", PROMPT, "result")
    assert cache.get("gen", "a red jacket, studio lights") is None


def test_fuzzy_picks_the_nearest_key_of_any_nearby_length() -> None:
    cache = fuzzy_cache()
    for key in ("a red hat", "a red hats!!", "a red ha"):
        cache.put("gen", key, key)
    hit = cache.get("gen", "a red hat!")
    assert hit is not None and (hit.key, hit.distance) == ("a red hat", 1)
    hit = cache.get("gen", "a red hats!!!")
    assert hit is not None and (hit.key, hit.distance) == ("a red hats!!", 1)
    assert cache.get("gen", "a red hat with a feather") is None


def test_fuzzy_distance_matches_levenshtein_on_random_keys() -> None:
    rng = random.Random(0)
    for _ in range(300):
        cache: ResultCache[str] = ResultCache(100, fuzzy=True, max_distance=rng.randrange(4))
        keys = {"".join(rng.choice("ab") for _ in range(rng.randrange(8))) for _ in range(6)}
        for key in keys:
            cache.put("gen", key, key)
        asked = "".join(rng.choice("ab") for _ in range(rng.randrange(8)))
        nearest = min(Levenshtein.distance(asked, key) for key in keys)
        hit = cache.get("gen", asked)
        if nearest > cache.max_distance:
            assert hit is None
        else:
            assert hit is not None and hit.distance == nearest
            assert Levenshtein.distance(asked, hit.key) == nearest


def test_namespaces_are_isolated_exact() -> None:
    cache: ResultCache[str] = ResultCache(10)
    cache.put("gen", PROMPT, "generated")
    cache.put("edit", PROMPT, "edited")
    assert cache.get("gen", PROMPT) == CacheHit("generated", PROMPT, 0)
    assert cache.get("edit", PROMPT) == CacheHit("edited", PROMPT, 0)
    assert cache.get("upscale", PROMPT) is None


def test_namespaces_are_isolated_fuzzy() -> None:
    cache = fuzzy_cache()
    cache.put("gen", PROMPT, "result")
    assert cache.get("edit", "a red jacket, studio lights") is None


def test_put_of_an_existing_key_replaces_its_value() -> None:
    cache: ResultCache[int] = ResultCache(10)
    cache.put("gen", "k", 1)
    cache.put("gen", "k", 2)
    assert cache.get("gen", "k") == CacheHit(2, "k", 0) and len(cache) == 1


def test_the_least_recently_put_is_evicted_first() -> None:
    cache: ResultCache[int] = ResultCache(2)
    for value, key in enumerate(("one", "two", "three")):
        cache.put("gen", key, value)
    assert cache.get("gen", "one") is None
    assert cache.get("gen", "two") is not None and cache.get("gen", "three") is not None


def test_eviction_counts_every_namespace() -> None:
    cache: ResultCache[int] = ResultCache(2)
    cache.put("gen", "k", 1)
    cache.put("edit", "k", 2)
    cache.put("edit", "j", 3)
    assert cache.get("gen", "k") is None and len(cache) == 2


def test_an_exact_hit_refreshes_recency() -> None:
    cache: ResultCache[int] = ResultCache(2)
    cache.put("gen", "one", 1)
    cache.put("gen", "two", 2)
    assert cache.get("gen", "one") is not None
    cache.put("gen", "three", 3)
    assert cache.get("gen", "two") is None
    assert cache.get("gen", "one") is not None


def test_a_fuzzy_hit_refreshes_the_stored_keys_recency() -> None:
    cache: ResultCache[int] = ResultCache(2, fuzzy=True)
    cache.put("gen", PROMPT, 1)
    cache.put("gen", "something else entirely", 2)
    assert cache.get("gen", PROMPT + "s") is not None
    cache.put("gen", "a third prompt, far away", 3)
    assert cache.get("gen", "something else entirely") is None
    assert cache.get("gen", PROMPT) is not None


def test_an_evicted_key_gives_no_fuzzy_hit() -> None:
    cache: ResultCache[int] = ResultCache(1, fuzzy=True)
    cache.put("gen", PROMPT, 1)
    cache.put("gen", "zzz", 2)
    assert cache.get("gen", PROMPT + "s") is None


def test_len_counts_entries_of_every_namespace() -> None:
    cache: ResultCache[int] = ResultCache(10)
    assert len(cache) == 0
    cache.put("gen", "a", 1)
    cache.put("edit", "a", 2)
    assert len(cache) == 2


def test_clear_empties_exact_and_fuzzy_lookups() -> None:
    cache = fuzzy_cache()
    cache.put("gen", PROMPT, "result")
    cache.clear()
    assert len(cache) == 0
    assert cache.get("gen", PROMPT) is None
    assert cache.get("gen", "a red jacket, studio lights") is None


def test_a_cache_of_zero_entries_keeps_nothing() -> None:
    cache: ResultCache[int] = ResultCache(0)
    cache.put("gen", "a", 1)
    assert len(cache) == 0 and cache.get("gen", "a") is None


@pytest.mark.parametrize(("entries", "distance"), [(-1, 3), (10, -1)])
def test_negative_sizes_are_refused(entries: int, distance: int) -> None:
    with pytest.raises(ValueError, match="must be 0 or more"):
        ResultCache(entries, max_distance=distance)
