"""view_url builds a peer's /view URL; compress_url stores any string short and reversibly."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from dispatch_core import compress_url, decompress_url, view_url

LOCAL = "http://10.0.0.1:8188/view?filename=ComfyUI_00001_.png&subfolder=&type=output"


@dataclass
class _File:
    filename: str
    subfolder: str
    type: str


def test_view_url_quotes_the_query() -> None:
    output = {"filename": "a b&c=d.png", "subfolder": "x/y", "type": "output"}
    assert view_url("http://h:1", output) == (
        "http://h:1/view?filename=a+b%26c%3Dd.png&subfolder=x%2Fy&type=output"
    )


def test_view_url_ignores_a_trailing_slash() -> None:
    output = {"filename": "f.png", "subfolder": "", "type": "output"}
    assert view_url("http://h:1/", output) == view_url("http://h:1", output)


def test_view_url_keeps_a_base_path() -> None:
    url = view_url("https://proxy/comfy/", {"filename": "f.png"})
    assert url == "https://proxy/comfy/view?filename=f.png&subfolder=&type=output"


def test_view_url_defaults_subfolder_and_type() -> None:
    assert view_url("http://h", {"filename": "f.png"}).endswith(
        "?filename=f.png&subfolder=&type=output"
    )


def test_view_url_of_an_output_file_object() -> None:
    url = view_url("http://h", _File("f.png", "sub", "temp"))
    assert url == "http://h/view?filename=f.png&subfolder=sub&type=temp"


def test_view_url_quotes_unicode() -> None:
    url = view_url("http://h", {"filename": "é.png"})
    assert url.startswith("http://h/view?filename=%C3%A9.png&")


def test_a_default_output_url_compresses_to_host_and_name() -> None:
    assert compress_url(LOCAL) == "v:10.0.0.1:8188|ComfyUI_00001_.png"
    assert decompress_url("v:10.0.0.1:8188|ComfyUI_00001_.png") == LOCAL


def test_an_https_url_with_a_subfolder_compresses() -> None:
    url = "https://gpu:8443/view?filename=a.png&subfolder=dispatch&type=output"
    assert compress_url(url) == "vs:gpu:8443|a.png|dispatch"


@pytest.mark.parametrize(("kind", "letter"), [("temp", "t"), ("input", "i")])
def test_temp_and_input_types_compress_to_a_letter(kind: str, letter: str) -> None:
    url = f"http://gpu:8188/view?filename=a.png&subfolder=&type={kind}"
    assert compress_url(url) == f"v:gpu:8188|a.png||{letter}"
    assert decompress_url(compress_url(url)) == url


def test_a_url_view_url_built_compresses_to_the_short_form() -> None:
    url = view_url("http://gpu:8188", {"filename": "a b.png", "subfolder": "x", "type": "temp"})
    assert compress_url(url) == "v:gpu:8188|a b.png|x|t"
    assert decompress_url(compress_url(url)) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://h/view?type=output&filename=a.png&subfolder=",  # another order
        "http://h/view?filename=a.png&subfolder=&type=output&x=1",  # another field
        "http://h/view?filename=a.png&subfolder=&type=other",  # another type
        "http://h/view?filename=a|b.png&subfolder=&type=output",  # the separator
        "http://h/view?filename=a.png&subfolder=&type=output#top",  # a fragment
        "http://h/view?filename=a%20b.png&subfolder=&type=output",  # %20, not +
        "ftp://h/view?filename=a.png&subfolder=&type=output",
    ],
)
def test_a_url_the_short_form_would_change_is_kept_otherwise(url: str) -> None:
    assert not compress_url(url).startswith(("v:", "vs:"))
    assert decompress_url(compress_url(url)) == url


def test_a_long_repetitive_url_is_deflated() -> None:
    url = "http://example.com/" + "segment/" * 40
    packed = compress_url(url)
    assert packed.startswith("z:") and len(packed) < len(url)
    assert decompress_url(packed) == url


def test_a_short_string_is_stored_as_is() -> None:
    assert compress_url("abc") == "r:abc"


def test_the_empty_string_round_trips() -> None:
    assert decompress_url(compress_url("")) == ""


@pytest.mark.parametrize(
    "text",
    [
        "http://[::1/view?filename=a&subfolder=&type=output",  # an unclosed IPv6 bracket
        "http://a\u2100b/view?filename=a&subfolder=&type=output",  # a netloc bad under NFKC
        "http://h/view?filename=\ud800&subfolder=&type=output",  # a lone surrogate
        "\udfff",
    ],
)
def test_strings_urlsplit_or_utf8_refuse_still_round_trip(text: str) -> None:
    assert decompress_url(compress_url(text)) == text


def _random_string(rng: random.Random) -> str:
    pieces = ["|", "%", "%2", "%41", ":", "/", "?", "&", "=", "#", "+", " ", "v:", "z:", "r:"]
    pieces += ["é", "😀", "\u0000", "\n", "http://", "/view?", "filename=", "&type=output"]
    length = rng.randrange(12)
    chars = [
        rng.choice(pieces) if rng.random() < 0.6 else chr(rng.randrange(0x110000))
        for _ in range(length)
    ]
    return "".join(chars)


def test_any_string_round_trips() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        text = _random_string(rng)
        assert decompress_url(compress_url(text)) == text, text


def test_any_view_url_round_trips() -> None:
    rng = random.Random(0)
    for _ in range(1000):
        output = {
            "filename": _random_string(rng),
            "subfolder": _random_string(rng),
            "type": rng.choice(["output", "input", "temp", "other"]),
        }
        host = rng.choice(["http://h", "https://gpu:8443", "http://[::1]:8188"])
        try:
            url = view_url(host, output)
        except UnicodeEncodeError:  # a lone surrogate cannot be %-quoted
            continue
        assert decompress_url(compress_url(url)) == url, url


def test_compression_never_makes_a_string_longer_than_the_raw_form() -> None:
    rng = random.Random(0)
    for _ in range(300):
        text = _random_string(rng)
        assert len(compress_url(text)) <= len(text) + 2


@pytest.mark.parametrize("text", ["", "nocolon", "q:x", "z:!!", "z:abcd", "v:h|f|s|x"])
def test_decompress_refuses_what_compress_never_made(text: str) -> None:
    with pytest.raises(ValueError, match="not a compressed URL"):
        decompress_url(text)
