"""Which ComfyUI flags a managed worker may be given: an allow-list, checked item by item.

A worker's flags come from a request, and ComfyUI's own flags can make it listen on every
interface, serve another front end, read models or custom nodes from elsewhere, or write
its files anywhere (`comfy/cli_args.py`). So only flags that change how a worker computes
(memory, device, precision, attention, caching, previews, logging level) pass; where it
listens, what it serves and which files it uses stay the dispatcher's choice. Anything
unknown is refused, including abbreviations that argparse would otherwise expand.

Names and values follow ComfyUI 0.3.64. Accepted forms: `--flag`, `--flag=VALUE`, and for
a flag that takes a value also `--flag VALUE` as two items.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MAX_ARGS", "check_args"]

MAX_ARGS = 32
_MAX_ITEM = 64

_INT = re.compile(r"[0-9]{1,6}")
_NUMBER = re.compile(r"[0-9]{1,4}(\.[0-9]{1,3})?")
_FEATURE = re.compile(r"[a-z0-9_]{1,32}")
"""A `--fast` feature name: ComfyUI checks it against its own list, newer ones included."""


@dataclass(frozen=True)
class _Flag:
    value: re.Pattern[str] | None = None
    """What a value must match; None for a flag that takes none."""
    needs_value: bool = True
    """False for `nargs="?"` and `"*"`: the flag alone is fine too."""
    many: bool = False
    """`nargs="*"`: several values may follow as separate items."""


def _choice(*names: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(name) for name in names))


_SWITCH = _Flag()
_SWITCHES = (
    # memory: how much of the model stays on the GPU
    "--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu",
    "--disable-smart-memory", "--async-offload", "--force-non-blocking",
    "--cuda-malloc", "--disable-cuda-malloc", "--mmap-torch-files", "--disable-mmap",
    # precision
    "--force-fp32", "--force-fp16",
    "--fp32-unet", "--fp64-unet", "--bf16-unet", "--fp16-unet",
    "--fp8_e4m3fn-unet", "--fp8_e5m2-unet", "--fp8_e8m0fnu-unet",
    "--fp16-vae", "--fp32-vae", "--bf16-vae", "--cpu-vae",
    "--fp8_e4m3fn-text-enc", "--fp8_e5m2-text-enc", "--fp16-text-enc", "--fp32-text-enc",
    "--bf16-text-enc", "--supports-fp8-compute", "--force-channels-last",
    # attention
    "--use-split-cross-attention", "--use-quad-cross-attention",
    "--use-pytorch-cross-attention", "--use-sage-attention", "--use-flash-attention",
    "--disable-xformers", "--force-upcast-attention", "--dont-upcast-attention",
    "--disable-ipex-optimize",
    # caching and determinism
    "--cache-classic", "--cache-none", "--deterministic",
)  # fmt: skip

_ALLOWED: dict[str, _Flag] = {
    **dict.fromkeys(_SWITCHES, _SWITCH),
    "--cache-lru": _Flag(_INT),
    "--reserve-vram": _Flag(_NUMBER),
    "--preview-method": _Flag(_choice("none", "auto", "latent2rgb", "taesd")),
    "--preview-size": _Flag(_INT),
    "--default-hashing-function": _Flag(_choice("md5", "sha1", "sha256", "sha512")),
    "--verbose": _Flag(_choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), False),
    "--directml": _Flag(_INT, needs_value=False),
    "--fast": _Flag(_FEATURE, needs_value=False, many=True),
}

_REFUSED = (
    "worker flags may only change how ComfyUI computes (memory, precision, attention, "
    "cache, previews); where it listens, what it serves and which files it uses are the "
    "dispatcher's"
)


def check_args(items: object) -> tuple[str, ...]:
    """The flags, as given, if every one is allowed; else ValueError naming the first."""
    if not isinstance(items, list | tuple) or not all(isinstance(a, str) for a in items):
        raise ValueError("'args' must be a list of ComfyUI flags, such as [\"--lowvram\"]")
    if len(items) > MAX_ARGS:
        raise ValueError(f"'args' takes at most {MAX_ARGS} items")
    index = 0
    while index < len(items):
        index = _check_one(items, index)
    return tuple(items)


def _check_one(items: Sequence[str], index: int) -> int:
    """Check the flag at `index` with any value items after it; the index after them."""
    item = items[index]
    if len(item) > _MAX_ITEM:
        raise ValueError(f"'args': {item[:_MAX_ITEM]!r}… is too long")
    name, equals, value = item.partition("=")
    flag = _ALLOWED.get(name)
    if flag is None:
        if not item.startswith("--"):
            raise ValueError(f"'args': {item!r} is not a flag (no positional arguments)")
        raise ValueError(f"'args': {name} is not allowed: {_REFUSED}")
    if flag.value is None:
        if equals:
            raise ValueError(f"'args': {name} takes no value")
        return index + 1
    if equals:
        _check_value(name, flag, value)
        return index + 1
    following = index + 1
    while following < len(items) and flag.value.fullmatch(items[following]):
        following += 1
        if not flag.many:
            break
    if following == index + 1 and flag.needs_value:
        raise ValueError(f"'args': {name} needs a value ({name}=VALUE)")
    return following


def _check_value(name: str, flag: _Flag, value: str) -> None:
    assert flag.value is not None
    if not flag.value.fullmatch(value):
        raise ValueError(f"'args': {name}={value!r} is not a value it takes")
