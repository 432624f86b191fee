"""JSON from outside (request bodies, peer answers, WebSocket frames), bounded.

`json.loads` alone lets a hostile sender choose the shape of what follows: nesting deep
enough to exhaust the recursion limit later (in a copy, a dump, a walk), integers of
hundreds of digits, `NaN` and `Infinity`. (`1e999` reads as infinity: each reader of a
number checks its range, naming the field.) `loads_bounded` refuses all of them with a
`JSONLimitError` naming the first place at fault, so callers turn it into a 4xx (a
request) or a BadResponse (a peer) instead of a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_INT", "JSONLimitError", "loads_bounded"]

MAX_DEPTH = 64
"""Deeper than any ComfyUI workflow, history entry or object_info answer."""
MAX_INT = 2**64
"""Seeds run up to 2^64 - 1 in ComfyUI; nothing we read needs more."""


_TWENTY_DIGITS = re.compile(r"\d{20}")
_TWENTY_DIGITS_BYTES = re.compile(rb"\d{20}")


class JSONLimitError(ValueError):
    """Not JSON, or JSON outside the bounds; `where` names the first place at fault."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.where = where


def _refuse_constant(name: str) -> Any:
    raise JSONLimitError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise JSONLimitError(f"integer of {len(text)} digits is too large")
    return int(text)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_bounded_int)
"""One decoder for every call: `json.loads` with options builds a new one each time,
which took as long as parsing a progress frame."""


def loads_bounded(raw: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `raw`; refuse depth over `max_depth`, |integers| ≥ 2^64, NaN and Infinity."""
    try:
        if isinstance(raw, bytes):  # as json.loads reads bytes
            raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
        value = _DECODER.decode(raw)
    except RecursionError:
        raise JSONLimitError(f"nested deeper than {max_depth} levels") from None
    except JSONLimitError:
        raise
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise JSONLimitError(f"not valid JSON at {where}: {error.msg}") from None
    except UnicodeDecodeError:
        raise JSONLimitError("not UTF-8 text") from None
    if _may_exceed(raw, max_depth):
        _check(value, max_depth)
    return value


def _may_exceed(raw: str | bytes, max_depth: int) -> bool:
    """Whether the text could break a bound the parser let through: each level of nesting
    opens a bracket, and an integer of 2^64 or more has twenty digits. Brackets and digits
    in strings count too, which only ever asks for the walk. Most frames a peer sends
    (progress, executing) have a few brackets and no long number: they skip the walk."""
    if isinstance(raw, str):
        opened = raw.count("{") + raw.count("[")
        return opened >= max_depth or _TWENTY_DIGITS.search(raw) is not None
    opened = raw.count(b"{") + raw.count(b"[")
    return opened >= max_depth or _TWENTY_DIGITS_BYTES.search(raw) is not None


def _check(value: Any, max_depth: int) -> None:
    """Walk without recursion: depth and integer size of every value."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise JSONLimitError(f"nested deeper than {max_depth} levels", where[:80])
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                stack.append((child, depth + 1, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= MAX_INT:
            raise JSONLimitError("integer too large (at most 2^64 - 1)", where[:80])
