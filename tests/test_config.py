"""Config loading names the key at fault; saving is atomic and round-trips."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dispatch_core import Config, ConfigError, ServerConfig, load_config, save_config

FULL = {
    "servers": {
        "fast": "http://10.0.0.1:8188",
        "edit": {
            "url": "https://edit.example:8443/",
            "max_in_flight": 2,
            "headers": {"Authorization": "Bearer secret"},
            "enabled": False,
            "weight": 2.5,
        },
    },
    "routes": {"generate": "fast", "edit": ["edit", "fast"]},
    "timeouts": {"job": 60, "poll_interval": 0.5, "request": 10},
    "cache": {"enabled": False, "fuzzy": True, "max_distance": 5, "max_entries": 10},
}


def test_full_config_parses_with_every_field() -> None:
    config = Config.from_dict(FULL)
    assert config.servers["fast"] == ServerConfig(name="fast", url="http://10.0.0.1:8188")
    edit = config.servers["edit"]
    assert edit.url == "https://edit.example:8443"
    assert (edit.max_in_flight, edit.enabled, edit.weight) == (2, False, 2.5)
    assert edit.headers == {"Authorization": "Bearer secret"}
    assert config.routes == {"generate": ("fast",), "edit": ("edit", "fast")}
    assert (config.timeouts.job, config.timeouts.poll_interval, config.timeouts.request) == (
        60,
        0.5,
        10,
    )
    assert config.cache.fuzzy and config.cache.max_distance == 5


def test_defaults() -> None:
    config = Config.from_dict({})
    assert config.timeouts.job == 300 and config.timeouts.poll_interval == 1.2
    cache = config.cache
    assert (cache.enabled, cache.fuzzy, cache.max_distance, cache.max_entries) == (
        True,
        False,
        3,
        500,
    )
    server = Config.single("http://127.0.0.1:8188").servers["local"]
    assert (server.max_in_flight, server.enabled, server.weight) == (1, True, 1.0)


@pytest.mark.parametrize(
    ("patch", "key", "words"),
    [
        ({"srevers": {}}, "srevers", "unknown key"),
        ({"servers": []}, "servers", "expected an object"),
        ({"servers": {"a": "ftp://x"}}, "servers.a", "not an http"),
        ({"servers": {"a": "http://"}}, "servers.a", "no host"),
        ({"servers": {"a": "http://x:99999"}}, "servers.a", "invalid port"),
        ({"servers": {"a": 8188}}, "servers.a", "expected a URL"),
        ({"servers": {"a": {"max_in_flight": 1}}}, "servers.a.url", "missing"),
        (
            {"servers": {"a": {"url": "http://x", "max_in_flight": 0}}},
            "servers.a.max_in_flight",
            "at least 1",
        ),
        (
            {"servers": {"a": {"url": "http://x", "max_in_flight": 1.5}}},
            "servers.a.max_in_flight",
            "whole",
        ),
        (
            {"servers": {"a": {"url": "http://x", "weight": 0}}},
            "servers.a.weight",
            "greater than 0",
        ),
        (
            {"servers": {"a": {"url": "http://x", "enabled": "yes"}}},
            "servers.a.enabled",
            "true or false",
        ),
        (
            {"servers": {"a": {"url": "http://x", "headers": {"X": 1}}}},
            "servers.a.headers.X",
            "strings",
        ),
        ({"servers": {"a": {"url": "http://x", "colour": 1}}}, "servers.a.colour", "unknown key"),
        ({"routes": {"gen": "nowhere"}}, "routes.gen", "unknown server 'nowhere'"),
        ({"servers": {"a": "http://x"}, "routes": {"gen": []}}, "routes.gen", "non-empty list"),
        ({"servers": {"a": "http://x"}, "routes": {"gen": ["a", "a"]}}, "routes.gen", "twice"),
        ({"timeouts": {"job": -1}}, "timeouts.job", "greater than 0"),
        ({"timeouts": {"job": "long"}}, "timeouts.job", "expected a number"),
        ({"timeouts": {"jobs": 1}}, "timeouts.jobs", "unknown key"),
        ({"cache": {"max_entries": 0}}, "cache.max_entries", "at least 1"),
        ({"cache": {"fuzzy": 1}}, "cache.fuzzy", "true or false"),
    ],
)
def test_each_mistake_names_its_key(patch: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_dict(patch, path="dispatch.json")
    assert caught.value.key == key
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"dispatch.json: {key}: ")


def test_unparsable_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dispatch.json"
    path.write_text('{\n  "servers": {,}\n}')
    with pytest.raises(ConfigError, match=r"dispatch.json: not valid JSON at line 2"):
        load_config(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.json")


def test_save_is_atomic_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "dispatch.json"
    config = Config.from_dict(FULL)
    save_config(config, path)
    assert load_config(path) == config
    before = path.read_text()

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_config(Config.from_dict({}), path)
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["dispatch.json"]
    assert json.loads(before)["routes"]["edit"] == ["edit", "fast"]


async def test_a_dispatcher_takes_a_plain_mapping_checked_as_a_file_is() -> None:
    from dispatch_core import Dispatcher

    async with Dispatcher({"servers": {"a": "http://127.0.0.1:1"}, "routes": {"r": "a"}}) as d:
        assert d.config.routes == {"r": ("a",)} and d.servers_for("r") == ("a",)
    with pytest.raises(ConfigError) as caught:
        Dispatcher({"servers": {"a": "ftp://x"}})
    assert caught.value.key == "servers.a"
    with pytest.raises(ConfigError, match="unknown key"):
        Dispatcher({"server": {}})
