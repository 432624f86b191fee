"""A template's parameters as widgets of the node: `param:NAME` inputs.

The frontend (`web/node/params.js`) gives the node one widget per parameter of the chosen
template, named `param:NAME`; their values reach the node as inputs of that name. A V1 node
receives only the inputs its INPUT_TYPES declares, so the optional section is a dict that
also claims every `param:` name (ComfyUI asks it with `in` and `[]` when it reads a prompt);
listing it, as `/object_info` does, shows only the inputs declared. Validation of the values
is the template's own, as for the JSON overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PREFIX", "ParamInputs", "param_values"]

PREFIX = "param:"
_ANY = ("*", {"tooltip": "A parameter of the template."})


class ParamInputs(dict[str, Any]):
    """The optional inputs, which also take any `param:NAME` input a widget adds."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or _is_param(key)

    def __getitem__(self, key: str) -> Any:
        if not super().__contains__(key) and _is_param(key):
            return _ANY
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


def _is_param(key: object) -> bool:
    return isinstance(key, str) and key.startswith(PREFIX) and len(key) > len(PREFIX)


def param_values(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter values among a node's inputs: `{"prompt": …}` of `param:prompt`."""
    return {k[len(PREFIX) :]: v for k, v in inputs.items() if _is_param(k)}
