"""ComfyUI's own words for a refused prompt, and the checks the gateway makes itself.

ComfyUI answers a prompt it will not run with a 400 `{"error": {"type", "message",
"details", "extra_info"}, "node_errors": {…}}` (execution.py: `validate_prompt`). The
gateway checks what it can know for the whole farm before a job is queued (the shape of
the body, node classes that no server has, missing required inputs, list choices that no
server offers: a model file none holds) and answers those in that shape; what only the
peer can judge it judges when the prompt reaches it, and the client hears it as an
`execution_error`. Each refusal also names its `field`, as every answer of the gateway.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

__all__ = ["ComfyRefusal", "check_prompt", "checked_id", "output_nodes"]

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
"""Prompt and client ids: a uuid fits, so does anything a client makes; never a path."""


class ComfyRefusal(Exception):
    """A request refused in ComfyUI's shape."""

    def __init__(
        self,
        kind: str,
        message: str,
        details: str = "",
        *,
        field: str = "prompt",
        node_errors: Mapping[str, Any] | list[Any] | None = None,
        status: int = 400,
    ):
        super().__init__(message)
        self.kind, self.message, self.details, self.field = kind, message, details, field
        self.node_errors = node_errors if node_errors is not None else {}
        self.status = status

    def response(self) -> web.Response:
        error = {
            "type": self.kind,
            "message": self.message,
            "details": self.details,
            "extra_info": {},
            "field": self.field,
        }
        body = {"error": error, "node_errors": self.node_errors}
        return web.json_response(body, status=self.status)


def checked_id(value: Any, field: str) -> str:
    """A prompt or client id as given, or a refusal: never a path, never unbounded."""
    if not isinstance(value, str) or not _ID.match(value) or ".." in value:
        raise ComfyRefusal(
            "invalid_prompt",
            f"'{field}' must be 1 to 128 letters, digits or '_.:-' (a uuid, say)",
            field=field,
        )
    return value


def output_nodes(prompt: Mapping[str, Any], info: Mapping[str, Any]) -> list[str]:
    """The ids of the nodes ComfyUI would run as outputs (`output_node` in object_info)."""
    return [
        node_id for node_id, node in prompt.items() if _spec(info, node).get("output_node") is True
    ]


def check_prompt(body: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt of a `POST /prompt` body, checked as ComfyUI checks it against `info`
    (the farm's object_info; empty when no server could be asked: the peers judge)."""
    prompt = body.get("prompt")
    if prompt is None:
        raise ComfyRefusal("no_prompt", "No prompt provided", "No prompt provided", node_errors=[])
    if not isinstance(prompt, dict) or not prompt:
        raise ComfyRefusal("invalid_prompt", "The prompt must be an object of nodes by id")
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise ComfyRefusal(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise ComfyRefusal("invalid_prompt", "A node's inputs must be an object", node_id)
        if info and node["class_type"] not in info:
            raise ComfyRefusal(
                "invalid_prompt",
                f"Cannot execute because node {node['class_type'][:200]} does not exist.",
                f"Node ID '#{node_id}'",
            )
    if info:
        _check_nodes(prompt, info)
    return prompt


def _check_nodes(prompt: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    outputs = output_nodes(prompt, info)
    if not outputs:
        raise ComfyRefusal("prompt_no_outputs", "Prompt has no outputs")
    failed = {}
    for node_id, node in prompt.items():
        errors = _input_errors(node, _spec(info, node))
        if errors:
            failed[str(node_id)] = {
                "errors": errors,
                "dependent_outputs": outputs,
                "class_type": node["class_type"],
            }
    if failed:
        details = "\n".join(
            f"{e['message']}: {e['details']}" for n in failed.values() for e in n["errors"]
        )
        raise ComfyRefusal(
            "prompt_outputs_failed_validation",
            "Prompt outputs failed validation",
            details,
            node_errors=failed,
        )


def _input_errors(node: Mapping[str, Any], spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Missing required inputs, and legacy list choices no server offers (a model file)."""
    inputs = node.get("inputs") or {}
    required = (spec.get("input") or {}).get("required") or {}
    errors = []
    for name, entry in required.items() if isinstance(required, Mapping) else ():
        if name not in inputs:
            errors.append(_error("required_input_missing", "Required input is missing", name))
            continue
        value = inputs[name]
        if not isinstance(value, list):
            errors += _primitive_errors(name, value, entry)
        choices = _choices(entry)
        if choices is not None and not isinstance(value, list) and value not in choices:
            error = _error("value_not_in_list", "Value not in list", name)
            error["details"] = f"{name}: '{str(value)[:200]}' not in the farm's list"
            error["extra_info"].update(
                input_config=entry if len(choices) <= 20 else None, received_value=value
            )
            errors.append(error)
    return errors


_CASTS: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float}


def _primitive_errors(name: str, value: Any, entry: Any) -> list[dict[str, Any]]:
    """ComfyUI's checks of a number: it must convert, and lie within `min` and `max`."""
    kind = entry[0] if isinstance(entry, list) and entry else None
    cast = _CASTS.get(kind) if isinstance(kind, str) else None
    if cast is None:
        return []
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
    extra = {"input_name": name, "input_config": entry, "received_value": value}
    try:
        number = cast(value)
    except (TypeError, ValueError, OverflowError) as bad:
        error = _error(
            "invalid_input_type", f"Failed to convert an input value to a {kind} value", name
        )
        error["details"] = f"{name}, {str(value)[:200]}, {bad}"
        error["extra_info"] = {**extra, "exception_message": str(bad)}
        return [error]
    for bound, kind_name, word in (
        ("min", "value_smaller_than_min", "smaller than min"),
        ("max", "value_bigger_than_max", "bigger than max"),
    ):
        limit = options.get(bound)
        if isinstance(limit, (int, float)) and (
            number < limit if bound == "min" else number > limit
        ):
            error = _error(kind_name, f"Value {number} {word} of {limit}", name)
            error["extra_info"] = extra
            return [error]
    return []


def _choices(entry: Any) -> list[Any] | None:
    """The options of a legacy list combo, unless its node validates it itself (uploads)."""
    if not isinstance(entry, list) or not entry or not isinstance(entry[0], list):
        return None
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
    if options.get("image_upload") or options.get("video_upload") or options.get("audio_upload"):
        return None  # LoadImage and kin accept any file that exists: their peer says
    return entry[0]


def _error(kind: str, message: str, name: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": name, "extra_info": {"input_name": name}}


def _spec(info: Mapping[str, Any], node: Any) -> Mapping[str, Any]:
    kind = node.get("class_type") if isinstance(node, Mapping) else None
    spec = info.get(kind) if isinstance(kind, str) else None
    return spec if isinstance(spec, Mapping) else {}
