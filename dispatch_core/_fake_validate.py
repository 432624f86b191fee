"""The fake peer's `POST /prompt` validation, shaped like ComfyUI's `validate_prompt`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_CASTS: dict[str, type] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


@dataclass
class Validation:
    """What `/prompt` answers: a top-level error, node errors, and the outputs that will run."""

    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


def _top(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


InputExists = Callable[[str], bool]


def validate_prompt(
    prompt: Any, object_info: Mapping[str, Any], input_exists: InputExists = lambda _: True
) -> Validation:
    if not isinstance(prompt, Mapping):
        return Validation(error=_top("invalid_prompt", "Prompt is not an object"))
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        if class_type is None:
            return Validation(
                error=_top(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
            )
        if class_type not in object_info:
            return Validation(
                error=_top(
                    "invalid_prompt",
                    f"Cannot execute because node {class_type} does not exist.",
                    f"Node ID '#{node_id}'",
                )
            )
    outputs = [i for i, n in prompt.items() if object_info[n["class_type"]].get("output_node")]
    if not outputs:
        return Validation(error=_top("prompt_no_outputs", "Prompt has no outputs"))
    result = Validation()
    failed: list[str] = []
    for output in outputs:
        errors: dict[str, list[dict[str, Any]]] = {}
        missing = _validate_node(prompt, object_info, output, errors, set(), input_exists)
        if missing is not None:
            errors.setdefault(output, []).append(_missing_link(output, "", None, missing))
        if errors:
            failed.append(output)
            for node_id, node_errors in errors.items():
                entry = result.node_errors.setdefault(
                    node_id,
                    {
                        "errors": [],
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                entry["errors"] += [e for e in node_errors if e not in entry["errors"]]
                entry["dependent_outputs"] = list(failed)  # accumulates, as ComfyUI's does
        else:
            result.outputs.append(output)
    if not result.outputs:
        result.error = _top("prompt_outputs_failed_validation", "Prompt outputs failed validation")
    return result


def _validate_node(
    prompt: Mapping[str, Any],
    object_info: Mapping[str, Any],
    node_id: str,
    errors: dict[str, list[dict[str, Any]]],
    seen: set[str],
    input_exists: InputExists,
) -> str | None:
    """Validate one node and what it links to; the id of a missing linked node, if any."""
    if node_id in seen:
        return None
    seen.add(node_id)
    node = prompt[node_id]
    info = object_info[node["class_type"]]
    inputs = node.get("inputs") or {}
    required = (info.get("input") or {}).get("required") or {}
    optional = (info.get("input") or {}).get("optional") or {}
    found: list[dict[str, Any]] = []
    missing = next(
        (
            str(v[0])
            for v in inputs.values()
            if isinstance(v, list) and len(v) == 2 and str(v[0]) not in prompt
        ),
        None,
    )
    if missing is not None:
        return missing
    for name, config in {**required, **optional}.items():
        if name not in inputs:
            if name in required:
                found.append(
                    _error("required_input_missing", "Required input is missing", name, {})
                )
            continue
        value = inputs[name]
        if isinstance(value, list):
            problem = _check_link(
                prompt, object_info, name, config, value, errors, seen, input_exists
            )
            if problem is not None:
                errors.setdefault(str(value[0]), []).append(problem)
            continue
        problem = _check_value(name, config, value, input_exists)
        if problem is not None:
            found.append(problem)
    if found:
        errors.setdefault(node_id, []).extend(found)
    return None


def _check_link(
    prompt: Mapping[str, Any],
    object_info: Mapping[str, Any],
    name: str,
    config: Any,
    link: list[Any],
    errors: dict[str, list[dict[str, Any]]],
    seen: set[str],
    input_exists: InputExists,
) -> dict[str, Any] | None:
    if len(link) != 2:
        return _error(
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            name,
            {"input_config": config, "received_value": link},
        )
    source = str(link[0])
    missing = _validate_node(prompt, object_info, source, errors, seen, input_exists)
    # ComfyUI's KeyError surfaces under the linked node, with the linking input's name.
    return None if missing is None else _missing_link(source, name, config, missing)


def _missing_link(node_id: str, name: str, config: Any, source: str) -> dict[str, Any]:
    return {
        "type": "exception_during_inner_validation",
        "message": "Exception when validating inner node",
        "details": repr(source),
        "extra_info": {
            "input_name": name,
            "input_config": config,
            "exception_message": repr(source),
            "exception_type": "KeyError",
            "traceback": [
                '  File "execution.py", in validate_inputs\n'
                "    o_class_type = prompt[o_id]['class_type']\n"
            ],
            "linked_node": [node_id, 0],
        },
    }


def _check_value(
    name: str, config: Any, value: Any, input_exists: InputExists
) -> dict[str, Any] | None:
    kind = config[0] if isinstance(config, list) and config else None
    options = (
        config[1]
        if isinstance(config, list) and len(config) > 1 and isinstance(config[1], Mapping)
        else {}
    )
    if options.get("image_upload"):
        # LoadImage's VALIDATE_INPUTS accepts any existing annotated path, list or not.
        if input_exists(str(value)):
            return None
        return {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": f"{name} - Invalid image file: {value}",
            "extra_info": {"input_name": name},
        }
    if isinstance(kind, list):
        if value not in kind:
            shown = kind if len(kind) <= 20 else None
            return _error(
                "value_not_in_list",
                "Value not in list",
                f"{name}: '{value}' not in {kind}",
                {"input_config": shown, "received_value": value},
                input_name=name,
            )
        return None
    cast = _CASTS.get(str(kind))
    if cast is None:
        return None
    try:
        value = cast(value)
    except (TypeError, ValueError) as error:
        return _error(
            "invalid_input_type",
            f"Failed to convert an input value to a {kind} value",
            f"{name}, {value}, {error}",
            {"input_config": config, "received_value": value, "exception_message": str(error)},
            input_name=name,
        )
    if "min" in options and value < options["min"]:
        return _error(
            "value_smaller_than_min",
            f"Value {value} smaller than min of {options['min']}",
            name,
            {"input_config": config, "received_value": value},
        )
    if "max" in options and value > options["max"]:
        return _error(
            "value_bigger_than_max",
            f"Value {value} bigger than max of {options['max']}",
            name,
            {"input_config": config, "received_value": value},
        )
    return None


def _error(
    kind: str, message: str, details: str, extra: dict[str, Any], *, input_name: str | None = None
) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "details": details,
        "extra_info": {"input_name": input_name or details, **extra},
    }
