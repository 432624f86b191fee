"""Output URLs stored short and reversibly; the result cache, exact and fuzzy."""

from __future__ import annotations

import random

from dispatch_core import ResultCache, compress_url, decompress_url, view_url


def test_view_url_quotes_and_ignores_a_trailing_slash() -> None:
    output = {"filename": "a b&c.png", "subfolder": "x/y", "type": "temp"}
    assert view_url("http://h:1/", output) == (
        "http://h:1/view?filename=a+b%26c.png&subfolder=x%2Fy&type=temp"
    )
    assert view_url("http://h:1", {"filename": "f.png"}).endswith("subfolder=&type=output")


def test_view_urls_compress_to_a_short_form() -> None:
    url = "http://10.0.0.1:8188/view?filename=ComfyUI_00001_.png&subfolder=&type=output"
    assert compress_url(url) == "v:10.0.0.1:8188|ComfyUI_00001_.png"
    temp = "https://gpu:8443/view?filename=t_00001_.png&subfolder=dispatch&type=temp"
    assert compress_url(temp) == "vs:gpu:8443|t_00001_.png|dispatch|t"
    for value in (url, temp):
        assert decompress_url(compress_url(value)) == value


def test_any_string_round_trips() -> None:
    rng = random.Random(0)
    alphabet = "ab|%/?&=:é😀 \n" + "http://view"
    samples = ["", "|", "v:", "z:", "r:"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(60))) for _ in range(500)]
    samples += [
        "http://h/view?" + "&".join(rng.sample(["filename=a", "subfolder=", "type=output"], 3))
    ]
    for text in samples:
        assert decompress_url(compress_url(text)) == text, text


def test_long_urls_get_deflated() -> None:
    url = "http://example.com/" + "segment/" * 40
    packed = compress_url(url)
    assert packed.startswith("z:") and len(packed) < len(url) and decompress_url(packed) == url


def test_exact_then_fuzzy_hits_report_the_distance() -> None:
    cache: ResultCache[str] = ResultCache(10, fuzzy=True, max_distance=3)
    cache.put("gen", "a red jacket, studio light", "result")
    exact = cache.get("gen", "a red jacket, studio light")
    near = cache.get("gen", "a red jacket, studio lights")
    assert exact is not None and exact.distance == 0
    assert near is not None and (near.value, near.key, near.distance) == (
        "result",
        "a red jacket, studio light",
        1,
    )
    assert cache.get("gen", "a blue jacket, night light") is None
    assert cache.get("edit", "a red jacket, studio light") is None


def test_no_fuzzy_hits_unless_asked() -> None:
    cache: ResultCache[int] = ResultCache(10)
    cache.put("gen", "abc", 1)
    assert cache.get("gen", "abd") is None and cache.get("gen", "abc") is not None


def test_least_recently_used_is_evicted_and_a_hit_refreshes() -> None:
    cache: ResultCache[int] = ResultCache(2)
    cache.put("gen", "one", 1)
    cache.put("gen", "two", 2)
    assert cache.get("gen", "one") is not None
    cache.put("gen", "three", 3)
    assert cache.get("gen", "two") is None and len(cache) == 2
    assert cache.get("gen", "one") is not None and cache.get("gen", "three") is not None
    cache.clear()
    assert len(cache) == 0 and cache.get("gen", "one") is None


def test_fuzzy_finds_the_nearest_key_of_any_nearby_length() -> None:
    cache: ResultCache[str] = ResultCache(10, fuzzy=True, max_distance=3)
    for key in ("a red hat", "a red hats!!", "a red ha"):
        cache.put("gen", key, key)
    hit = cache.get("gen", "a red hat!")
    assert hit is not None and (hit.key, hit.distance) == ("a red hat", 1)
    hit = cache.get("gen", "a red hats!!!")
    assert hit is not None and (hit.key, hit.distance) == ("a red hats!!", 1)
    assert cache.get("gen", "a red hat with a feather") is None
