"""Node classes a test adds to a fake peer, as a custom node pack adds them to ComfyUI.

A pack's node is what ComfyUI's registry holds for it: its `/object_info` entry, an
optional `VALIDATE_INPUTS` over its plain (unlinked) inputs, and the function that runs
it, async here as ComfyUI 0.3.45+ allows. A pack may also register a prompt handler
(`PromptServer.add_on_prompt_handler`), which sees every `POST /prompt` body first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CustomNode", "PromptHandler"]

PromptHandler = Callable[[dict[str, Any]], dict[str, Any]]
"""Takes the body of `POST /prompt`, returns the body to validate and queue."""


@dataclass(frozen=True)
class CustomNode:
    """One node class of a custom node pack, for a FakePeer's `custom_nodes`."""

    info: Mapping[str, Any] = field(hash=False)
    """Its `/object_info` entry (`input`, `output`, `output_node`, …)."""
    run: Callable[[dict[str, Any]], Awaitable[tuple[tuple[Any, ...], dict[str, Any] | None]]]
    """Its inputs (links resolved) → its outputs and its UI dict (None for none)."""
    validate: Callable[..., bool | str] | None = None
    """VALIDATE_INPUTS: called with the inputs `validates` names → True, or a refusal."""
    validates: tuple[str, ...] = ()
    """The inputs VALIDATE_INPUTS takes: their built-in checks are skipped, and a refusal
    is reported once for each, as ComfyUI reports it."""
