"""The fake peer's `POST /prompt` validation: ComfyUI 0.3.64's `validate_prompt`, step by step.

It follows execution.py closely, quirks included: errors are found with real Python
exceptions where ComfyUI's are (a link to a missing node is a KeyError caught one level
up), `dependent_outputs` accumulates over failed outputs, values are converted in place
(the queued prompt carries `64`, not `"64"`), and `COMBO` inputs are not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._custom import CustomNode

__all__ = ["Validation", "validate_prompt"]

InputExists = Callable[[str], bool]
Result = tuple[bool, list[dict[str, Any]], str]
# Classes whose VALIDATE_INPUTS names these inputs: built-in range and list checks are skipped.
_CUSTOM = {"LoadImage": ("image",), "LoadImageMask": ("image",), "LoadLatent": ("latent",)}


@dataclass
class Validation:
    """What `/prompt` answers: a top-level error, node errors, and the outputs that will run."""

    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


def _top(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _type_name(error: BaseException) -> str:
    module = type(error).__module__
    name = type(error).__qualname__
    return name if module == "builtins" else f"{module}.{name}"


def _traceback(line: str) -> list[str]:
    return [f'  File "execution.py", in validate_inputs\n    {line}\n']


def validate_prompt(
    prompt: Any,
    object_info: Mapping[str, Any],
    input_exists: InputExists = lambda _: True,
    targets: list[str] | None = None,
    custom: Mapping[str, CustomNode] | None = None,
) -> Validation:
    """`targets` is `partial_execution_targets`: only those output nodes run."""
    outputs: list[str] = []
    for node_id in prompt:
        if "class_type" not in prompt[node_id]:
            return Validation(
                _top(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
            )
        class_type = prompt[node_id]["class_type"]
        info = object_info.get(class_type) if isinstance(class_type, str) else None
        if info is None:
            return Validation(
                _top(
                    "invalid_prompt",
                    f"Cannot execute because node {class_type} does not exist.",
                    f"Node ID '#{node_id}'",
                )
            )
        if info.get("output_node") is True and (targets is None or node_id in targets):
            outputs.append(node_id)
    if not outputs:
        return Validation(_top("prompt_no_outputs", "Prompt has no outputs"))
    validator = _Validator(prompt, object_info, input_exists, custom or {})
    return _validate_outputs(validator, outputs)


def _validate_outputs(validator: _Validator, outputs: list[str]) -> Validation:
    result = Validation()
    errors: list[tuple[str, list[dict[str, Any]]]] = []
    for output in outputs:
        try:
            valid, reasons, _ = validator.node(output)
        except Exception as error:  # ComfyUI catches everything here too
            valid = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(error),
                    "extra_info": {
                        "exception_type": _type_name(error),
                        "traceback": _traceback("o_class_type = prompt[o_id]['class_type']"),
                    },
                }
            ]
            validator.validated[output] = (False, reasons, output)
        if valid is True:
            result.outputs.append(output)
            continue
        errors.append((output, reasons))
        for node_id, (ok, node_reasons, _) in validator.validated.items():
            if ok is True or not node_reasons:
                continue
            entry = result.node_errors.setdefault(
                node_id,
                {
                    "errors": node_reasons,
                    "dependent_outputs": [],
                    "class_type": validator.prompt[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
    if not result.outputs:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, found in errors for e in found)
        result.error = _top(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
    return result


class _Validator:
    """validate_inputs with its `validated` memo shared across outputs."""

    def __init__(
        self,
        prompt: Any,
        object_info: Mapping[str, Any],
        input_exists: InputExists,
        custom_nodes: Mapping[str, CustomNode],
    ):
        self.prompt = prompt
        self.custom_nodes = custom_nodes
        self.info = object_info
        self.input_exists = input_exists
        self.validated: dict[str, Result] = {}

    def node(self, node_id: str) -> Result:
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        inputs = node["inputs"]
        class_type = node["class_type"]
        declared = self.info[class_type].get("input") or {}
        required = declared.get("required") or {}
        everything = {**required, **(declared.get("optional") or {})}
        pack_node = self.custom_nodes.get(class_type)
        custom = pack_node.validates if pack_node else _CUSTOM.get(class_type, ())
        errors: list[dict[str, Any]] = []
        valid = True
        for name, config in everything.items():
            if name not in inputs:
                if name in required:
                    errors.append(
                        _error("required_input_missing", "Required input is missing", name)
                    )
                continue
            value = inputs[name]
            if isinstance(value, list):
                problem, linked_ok = self._link(name, config, value)
                valid = valid and linked_ok
            else:
                problem = self._value(inputs, name, config, name in custom)
            if problem is not None:
                errors.append(problem)
        if pack_node is not None and pack_node.validate is not None:
            errors += _pack_validation(pack_node, inputs)
        else:
            for name in custom:
                if not isinstance(inputs.get(name), list):
                    errors += self._custom(name, inputs.get(name))
        result: Result = (not errors and valid, errors, node_id)
        self.validated[node_id] = result
        return result

    def _link(self, name: str, config: Any, link: list[Any]) -> tuple[dict[str, Any] | None, bool]:
        """A problem with a linked input, and whether the linked node validated."""
        info = _config(config)
        if len(link) != 2:
            return _error(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                name,
                input_config=info,
                received_value=link,
            ), True
        source = link[0]
        source_class = self.prompt[source]["class_type"]  # KeyError for a missing node
        received = tuple(self.info[source_class].get("output") or ())[link[1]]
        if not _types_fit(received, info[0]):
            return {
                "type": "return_type_mismatch",
                "message": "Return type mismatch between linked nodes",
                "details": f"{name}, received_type({received}) mismatch input_type({info[0]})",
                "extra_info": {
                    "input_name": name,
                    "input_config": info,
                    "received_type": received,
                    "linked_node": link,
                },
            }, True
        try:
            return None, self.node(source)[0] is True
        except Exception as error:
            self.validated[source] = (False, [_inner(name, info, link, error)], source)
            return None, False

    def _value(
        self, inputs: dict[str, Any], name: str, config: Any, custom: bool
    ) -> dict[str, Any] | None:
        """Convert in place as ComfyUI does, then check range and legacy list."""
        info = _config(config)
        kind = info[0]
        value = inputs[name]
        try:
            if isinstance(value, dict) and "__value__" in value:
                value = inputs[name] = value["__value__"]
            cast = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(str(kind))
            if cast is not None:
                value = inputs[name] = cast(value)
        except Exception as error:
            return _error(
                "invalid_input_type",
                f"Failed to convert an input value to a {kind} value",
                f"{name}, {value}, {error}",
                input_name=name,
                input_config=info,
                received_value=value,
                exception_message=str(error),
            )
        if custom:
            return None
        return _range_or_list(name, info, value)

    def _custom(self, name: str, value: Any) -> list[dict[str, Any]]:
        """LoadImage's (and LoadLatent's) VALIDATE_INPUTS: any existing input path is fine."""
        if value is None or self.input_exists(str(value)):
            return []
        return [
            {
                "type": "custom_validation_failed",
                "message": "Custom validation failed for node",
                "details": f"{name} - Invalid image file: {value}",
                "extra_info": {"input_name": name},
            }
        ]


def _pack_validation(node: CustomNode, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A custom node's VALIDATE_INPUTS: its refusal once for each input it takes."""
    assert node.validate is not None
    answer = node.validate(**{name: inputs.get(name) for name in node.validates})
    if answer is True:
        return []
    return [
        {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": f"{name} - {answer}",
            "extra_info": {"input_name": name},
        }
        for name in node.validates
    ]


def _config(config: Any) -> list[Any]:
    """(input_type, extra_info) as get_input_info returns it."""
    kind = config[0] if isinstance(config, list) and config else config
    extra = config[1] if isinstance(config, list) and len(config) > 1 else {}
    return [kind, extra if isinstance(extra, dict) else {}]


def _types_fit(received: Any, wanted: Any) -> bool:
    """comfy_execution.validation.validate_node_input, not strict."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    have = {t.strip() for t in received.split(",")}
    need = {t.strip() for t in wanted.split(",")}
    return "*" in have or "*" in need or bool(have & need)


def _range_or_list(name: str, info: list[Any], value: Any) -> dict[str, Any] | None:
    kind, extra = info
    if "min" in extra and value < extra["min"]:
        message = f"Value {value} smaller than min of {extra['min']}"
        return _error(
            "value_smaller_than_min", message, name, input_config=info, received_value=value
        )
    if "max" in extra and value > extra["max"]:
        message = f"Value {value} bigger than max of {extra['max']}"
        return _error(
            "value_bigger_than_max", message, name, input_config=info, received_value=value
        )
    if isinstance(kind, list) and value not in kind:
        shown = str(kind) if len(kind) <= 20 else f"(list of length {len(kind)})"
        return _error(
            "value_not_in_list",
            "Value not in list",
            f"{name}: '{value}' not in {shown}",
            input_name=name,
            input_config=info if len(kind) <= 20 else None,
            received_value=value,
        )
    return None


def _inner(name: str, info: list[Any], link: list[Any], error: Exception) -> dict[str, Any]:
    return {
        "type": "exception_during_inner_validation",
        "message": "Exception when validating inner node",
        "details": str(error),
        "extra_info": {
            "input_name": name,
            "input_config": info,
            "exception_message": str(error),
            "exception_type": _type_name(error),
            "traceback": _traceback("o_class_type = prompt[o_id]['class_type']"),
            "linked_node": link,
        },
    }


def _error(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    """One input's error; `input_name` defaults to `details`, as most of ComfyUI's do."""
    info = {"input_name": extra.pop("input_name", details), **extra}
    return {"type": kind, "message": message, "details": details, "extra_info": info}
