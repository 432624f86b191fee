"""The command line, run in a subprocess against a fake peer, as a user would."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from dispatch_core.testing import FakePeer

EXAMPLES = Path(__file__).resolve().parents[1] / "scripting"


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch_core",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_saves_outputs_and_applies_sets(tmp_path: Path) -> None:
    async with FakePeer() as peer:
        code, out, err = await cli(
            "run",
            "--server",
            peer.url,
            str(EXAMPLES / "invert_api.json"),
            "--set",
            "Canvas.width=8",
            "--set",
            'Save.filename_prefix="cli"',
            "--out",
            str(tmp_path),
        )
    assert code == 0, err
    saved = [Path(line) for line in out.splitlines()]
    assert len(saved) == 2 and all(p.exists() and p.name.startswith("cli") for p in saved)
    assert "done on local" in err


async def test_run_with_a_config_and_progress(tmp_path: Path) -> None:
    async with FakePeer(models={"checkpoints": ["sd15.safetensors"]}) as peer:
        config = tmp_path / "dispatch.json"
        config.write_text(json.dumps({"servers": {"gpu": peer.url}, "routes": {"generate": "gpu"}}))
        code, _, err = await cli(
            "run",
            "--config",
            str(config),
            "--route",
            "generate",
            str(EXAMPLES / "txt2img_api.json"),
            "--set",
            "Positive Prompt.text=a red jacket",
            "--out",
            str(tmp_path / "out"),
        )
    assert code == 0, err
    assert "gpu: " in err and "100%" in err
    assert len(list((tmp_path / "out").iterdir())) == 1


async def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    async with FakePeer() as peer:
        code, _, err = await cli(
            "run", "--server", peer.url, str(EXAMPLES / "invert_api.json"), "--set", "Nope.width=1"
        )
    assert code == 1 and err.startswith("error: ") and "Nope" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"servers": {"x": "ftp://y"}}')
    code, _, err = await cli("status", "--config", str(bad))
    assert code == 1 and "servers.x" in err and "not an http" in err


async def test_status_lists_every_server() -> None:
    async with FakePeer() as peer:
        code, out, err = await cli("status", "--server", peer.url)
        assert code == 0, err
        assert out.startswith("local") and "online" in out and peer.url in out
        code, out, _ = await cli("status", "--server", peer.url, "--json")
    assert json.loads(out)["local"]["online"] is True


async def test_the_readme_quickstart_runs(tmp_path: Path) -> None:
    models = {"checkpoints": ["sd15.safetensors"]}
    async with FakePeer(models=models) as gen, FakePeer(models=models) as edit:
        example = json.loads((EXAMPLES / "dispatch.json").read_text())
        example["servers"]["gen5080"]["url"] = gen.url
        example["servers"]["edit3080"]["url"] = edit.url
        config = tmp_path / "dispatch.json"
        config.write_text(json.dumps(example))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "quickstart.py"),
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "generated on gen5080" in text and "edited on edit3080" in text
    assert "cached = True" in text and "gen5080: online=True" in text
    assert len(edit.uploads) == 1
