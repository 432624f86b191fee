"""Build an SD1.5 checkpoint of random weights with a ComfyUI checkout's own classes.

A full-size model that ComfyUI's CheckpointLoaderSimple loads like any other (2.1 GB,
fp16), so that routing can be measured on real ComfyUI without downloading a model: its
pictures are noise, its load and run times are those of SD1.5.

    /path/to/ComfyUI/venv/bin/python tools/make_checkpoint.py \
        --comfyui /path/to/ComfyUI --out models/checkpoints/rand-1.safetensors --seed 1

Run it with the Python that runs that ComfyUI (it needs its torch and safetensors). The
UNet is `supported_models.SD15`'s, the text encoder `sd.CLIP` of its clip target, the VAE
the SD `AutoencoderKL`; the file is written through the model's `state_dict_for_saving`,
as ComfyUI's own CheckpointSave writes it. Different seeds give different files.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

# SD1.5's published architecture, as ComfyUI's model detection reads it from a checkpoint.
UNET = {
    "use_checkpoint": False,
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_spatial_transformer": True,
    "use_linear_in_transformer": False,
    "legacy": False,
    "adm_in_channels": None,
    "context_dim": 768,
    "num_heads": 8,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
VAE = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
STD = 0.02
"""Spread of the random weights: small enough that nothing overflows in fp16."""


def comfy_modules(checkout: Path) -> dict[str, Any]:
    """ComfyUI's modules, imported from the checkout (its folder goes first on the path)."""
    if not (checkout / "comfy" / "sd.py").is_file():
        raise SystemExit(f"{checkout} is not a ComfyUI checkout (no comfy/sd.py)")
    sys.path.insert(0, str(checkout))
    # Built on the CPU whatever the machine has: set before model_management picks a device.
    importlib.import_module("comfy.cli_args").args.cpu = True
    names = ["torch", "comfy.sd", "comfy.supported_models", "comfy.utils"]
    names.append("comfy.ldm.models.autoencoder")
    return {name: importlib.import_module(name) for name in names}


def randomize(module: Any, torch: Any, generator: Any) -> None:
    """Fill every floating-point tensor with seeded noise (ComfyUI leaves weights empty)."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator) * STD
                tensor.copy_(noise.to(tensor.dtype))


def build(modules: dict[str, Any], seed: int) -> dict[str, Any]:
    """The checkpoint's state dict: UNet, text encoder and VAE under ComfyUI's prefixes."""
    torch = modules["torch"]
    generator = torch.Generator().manual_seed(seed)
    config = modules["comfy.supported_models"].SD15(dict(UNET, dtype=torch.float16))
    model = config.get_model({})
    randomize(model, torch, generator)
    clip = modules["comfy.sd"].CLIP(
        target=config.clip_target(), model_options={"dtype": torch.float16}
    )
    randomize(clip.cond_stage_model, torch, generator)
    vae = modules["comfy.ldm.models.autoencoder"].AutoencoderKL(ddconfig=VAE, embed_dim=4)
    randomize(vae, torch, generator)
    state = model.state_dict_for_saving(clip.get_sd(), vae.state_dict())
    return {key: tensor.to(torch.float16).contiguous() for key, tensor in state.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="a ComfyUI checkout")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    began = time.monotonic()
    modules = comfy_modules(args.comfyui.resolve())
    state = build(modules, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    modules["comfy.utils"].save_torch_file(state, str(args.out), metadata={"seed": str(args.seed)})
    size = args.out.stat().st_size / 1e9
    print(f"{args.out}: {len(state)} tensors, {size:.2f} GB in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
