"""Named API keys for the standalone gateway: stored hashed, revocable, rate-limited.

A key is `dk_` and 32 random bytes (URL-safe base64), shown once when it is made; what is
kept, in `keys.json` beside the config (owner-only), is its SHA-256, its name, its rate and
when it was made. A key presented is hashed and compared with every stored hash in
constant time, so that neither a wrong key nor a timing tells anything about a right one.
A key's SHA-256 needs no salt or slow hash: it is 256 random bits, not a password.

The file is read again whenever it changes, so `python -m dispatch_core keys revoke NAME`
takes effect on a running gateway at its next request. The rate limit is a token bucket
per key, in memory: `rate` requests a minute, as a burst of up to `rate`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import write_atomically
from ..errors import Conflict, InputError, NotFound

__all__ = ["ApiKey", "ApiKeys", "parse_rate", "retry_after"]

_PREFIX = "dk_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_RATE = 1_000_000
_MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: never the key itself."""

    name: str
    digest: str
    """SHA-256 of the key, hex."""
    rate: int | None = None
    """Requests a minute; None: no limit."""
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """What `list` shows: everything but the digest."""
        return {"name": self.name, "rate": self.rate, "created": self.created}


def parse_rate(text: str | int | None) -> int | None:
    """`"60/min"`, `"60"` or 60 → 60 requests a minute; None or "" → no limit."""
    if text is None or text == "":
        return None
    if isinstance(text, bool):
        raise InputError("a rate is a whole number of requests a minute", field="rate")
    if isinstance(text, str):
        text = text.strip().removesuffix("/min").removesuffix("/m")
        if not text.isdigit() or len(text) > 7:
            raise InputError("a rate is N or N/min: a whole number of requests", field="rate")
    rate = int(text)
    if not 1 <= rate <= _MAX_RATE:
        raise InputError(f"a rate is from 1 to {_MAX_RATE} requests a minute", field="rate")
    return rate


class ApiKeys:
    """The keys in one file, and each key's bucket of requests."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self._clock = clock
        self._keys: dict[str, ApiKey] = {}
        self._seen: tuple[int, int] | None = None
        self._buckets: dict[str, tuple[float, float]] = {}
        """Key name → (tokens left, when counted)."""
        self._lock = threading.Lock()

    # -- what the CLI and the routes do ------------------------------------------------

    def create(self, name: str, rate: int | None = None) -> str:
        """A new key named `name`; the key itself, which is never shown again."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InputError(
                "a key's name is 1 to 64 letters, digits, '.', '_' or '-'", field="name"
            )
        keys = self._load()
        if name in keys:
            raise Conflict(f"a key named {name!r} exists; revoke it first", field="name")
        key = _PREFIX + secrets.token_urlsafe(32)
        keys[name] = ApiKey(name, _digest(key), rate, round(time.time(), 3))
        self._save(keys)
        return key

    def list(self) -> list[dict[str, Any]]:
        return [key.to_dict() for key in self._load().values()]

    def revoke(self, name: str) -> None:
        keys = self._load()
        if name not in keys:
            known = ", ".join(sorted(keys)) or "none"
            raise NotFound(f"no key {name[:64]!r} (keys: {known})", field="name")
        del keys[name]
        self._save(keys)
        self._buckets.pop(name, None)

    # -- what the gateway asks at each request -----------------------------------------

    def any(self) -> bool:
        return bool(self._load())

    def identify(self, presented: str) -> str | None:
        """The name of the key presented, or None for no key of ours."""
        if not presented.startswith(_PREFIX) or len(presented) > _MAX_KEY_LENGTH:
            return None
        digest = _digest(presented)
        found = None
        for key in self._load().values():  # every one compared: no early exit to time
            if hmac.compare_digest(key.digest, digest):
                found = key.name
        return found

    def admit(self, name: str) -> float | None:
        """None if the key may make a request now (and count it); else seconds to wait."""
        key = self._load().get(name)
        if key is None or key.rate is None:
            return None
        now = self._clock()
        per_second = key.rate / 60
        tokens, then = self._buckets.get(name, (float(key.rate), now))
        tokens = min(float(key.rate), tokens + (now - then) * per_second)
        if tokens >= 1:
            self._buckets[name] = (tokens - 1, now)
            return None
        self._buckets[name] = (tokens, now)
        return max((1 - tokens) / per_second, 0.001)

    # -- the file ------------------------------------------------------------------------

    def _load(self) -> dict[str, ApiKey]:
        """The keys, read again when the file changed (another process revoked one)."""
        try:
            stat = self.path.stat()
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen != self._seen:
                self._keys = _read(self.path) if seen is not None else {}
                self._seen = seen
            return dict(self._keys)

    def _save(self, keys: dict[str, ApiKey]) -> None:
        data = {
            name: {"sha256": k.digest, "rate": k.rate, "created": k.created}
            for name, k in keys.items()
        }
        write_atomically(self.path, (json.dumps(data, indent=2) + "\n").encode())
        self.path.chmod(0o600)
        with self._lock:
            self._keys, self._seen = dict(keys), None  # read again: a fresh stat


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _read(path: Path) -> dict[str, ApiKey]:
    """The file's keys; one that does not parse gives none (every key refused), not all."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    keys = {}
    for name, item in data.items() if isinstance(data, dict) else ():
        if isinstance(item, dict) and isinstance(item.get("sha256"), str):
            rate = item.get("rate")
            rate = rate if isinstance(rate, int) and not isinstance(rate, bool) else None
            created = item.get("created")
            created = float(created) if isinstance(created, (int, float)) else 0.0
            keys[str(name)] = ApiKey(str(name), item["sha256"], rate, created)
    return keys


def retry_after(seconds: float) -> str:
    """`Retry-After` takes whole seconds: rounded up, so that a retry then is admitted."""
    return str(max(1, math.ceil(seconds)))
