"""WorkflowBuilder: every edit, every error message, and the input never mutated."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from dispatch_core import WorkflowBuilder, WorkflowError
from dispatch_core.workflow import ImageUpload, is_ui_format, load_workflow

from . import workflows


def two_samplers() -> dict[str, Any]:
    workflow = workflows.txt2img()
    workflow["10"] = copy.deepcopy(workflow["3"])
    workflow["10"]["_meta"] = {"title": "Refiner"}
    return workflow


def test_set_by_id_title_and_class_never_mutates_the_input() -> None:
    original = workflows.txt2img()
    before = copy.deepcopy(original)
    built = (
        WorkflowBuilder(original)
        .set("6", "text", "a blue hat")
        .set(3, "steps", 9)
        .set("Negative Prompt", "text", "dark")
        .set("EmptyLatentImage", "batch_size", 2)
        .build()
    )
    assert original == before
    assert built["6"]["inputs"]["text"] == "a blue hat"
    assert built["3"]["inputs"]["steps"] == 9
    assert built["7"]["inputs"]["text"] == "dark"
    assert built["5"]["inputs"]["batch_size"] == 2


def test_build_returns_independent_copies() -> None:
    builder = WorkflowBuilder(workflows.invert())
    first = builder.build()
    first["1"]["inputs"]["width"] = 1
    assert builder.build()["1"]["inputs"]["width"] == 16
    copied = builder.copy().set("1", "width", 2)
    assert (
        builder.build()["1"]["inputs"]["width"] == 16
        and copied.build()["1"]["inputs"]["width"] == 2
    )


def test_ambiguous_name_lists_the_matches() -> None:
    with pytest.raises(WorkflowError, match="'KSampler' matches nodes 3, 10 by class") as caught:
        WorkflowBuilder(two_samplers()).set("KSampler", "seed", 1)
    assert caught.value.node == "KSampler"
    WorkflowBuilder(two_samplers()).set("Refiner", "seed", 1)  # a unique title is fine


def test_unknown_node_lists_what_exists() -> None:
    with pytest.raises(
        WorkflowError, match=r"no node 'Nope'.*1 \(Canvas\), 2 \(Invert\), 3 \(Save\)"
    ):
        WorkflowBuilder(workflows.invert()).set("Nope", "width", 1)


def test_unknown_input_lists_the_nodes_inputs() -> None:
    with pytest.raises(WorkflowError, match=r"node 1 \(EmptyImage\) has no input 'widht'.*width"):
        WorkflowBuilder(workflows.invert()).set("Canvas", "widht", 1)


def test_set_path_splits_at_the_last_dot() -> None:
    workflow = workflows.txt2img()
    workflow["6"]["_meta"]["title"] = "Prompt v1.5"
    built = WorkflowBuilder(workflow).set_path("Prompt v1.5.text", "x").set_path("3.cfg", 5).build()
    assert built["6"]["inputs"]["text"] == "x" and built["3"]["inputs"]["cfg"] == 5
    with pytest.raises(WorkflowError, match=r"expected NODE\.INPUT"):
        WorkflowBuilder(workflow).set_path("text", 1)


def test_apply_overrides_and_a_malformed_one() -> None:
    built = (
        WorkflowBuilder(workflows.txt2img())
        .apply_overrides({"KSampler": {"seed": 5, "steps": 2}})
        .build()
    )
    assert (built["3"]["inputs"]["seed"], built["3"]["inputs"]["steps"]) == (5, 2)
    with pytest.raises(WorkflowError, match="override for 'KSampler' must be an object"):
        WorkflowBuilder(workflows.txt2img()).apply_overrides({"KSampler": 5})  # type: ignore[dict-item]


def test_set_dimensions_on_every_source_or_one_node() -> None:
    built = WorkflowBuilder(workflows.txt2img()).set_dimensions(768, 512).build()
    assert (built["5"]["inputs"]["width"], built["5"]["inputs"]["height"]) == (768, 512)
    built = WorkflowBuilder(workflows.invert()).set_dimensions(3, 4, node="Canvas").build()
    assert (built["1"]["inputs"]["width"], built["1"]["inputs"]["height"]) == (3, 4)
    with pytest.raises(WorkflowError, match="no node with literal width and height"):
        WorkflowBuilder(workflows.load_invert()).set_dimensions(1, 1)


def test_randomize_seed_everywhere_or_on_one_node() -> None:
    built = WorkflowBuilder(two_samplers()).randomize_seed(rng=random.Random(1)).build()
    seeds = {built["3"]["inputs"]["seed"], built["10"]["inputs"]["seed"]}
    assert len(seeds) == 2 and all(0 <= s < 2**53 for s in seeds)
    one = WorkflowBuilder(two_samplers()).randomize_seed("Refiner", rng=random.Random(1)).build()
    assert one["3"]["inputs"]["seed"] == 1 and one["10"]["inputs"]["seed"] != 1
    with pytest.raises(WorkflowError, match="no node with a literal seed"):
        WorkflowBuilder(workflows.invert()).randomize_seed()


class _Output:
    filename = "made.png"

    async def read(self) -> bytes:
        return b"png"


def test_set_image_records_uploads_from_bytes_paths_and_outputs(tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"png")
    builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", b"data")
    assert builder.image_uploads == (ImageUpload("1", "image", b"data", "dispatch_1.png"),)
    assert builder.set_image("1", picture).image_uploads[0].filename == "cat.png"
    output = _Output()
    assert builder.set_image("1", output).image_uploads[0].source is output
    assert (
        builder.with_uploaded({"1": "dispatch/made.png"})["1"]["inputs"]["image"]
        == "dispatch/made.png"
    )
    builder.set("1", "image", "other.png")
    assert builder.image_uploads == ()
    with pytest.raises(WorkflowError, match="does not exist"):
        builder.set_image("1", tmp_path / "missing.png")
    with pytest.raises(WorkflowError, match="set_image takes bytes"):
        builder.set_image("1", 42)


def test_set_image_url_takes_http_only() -> None:
    workflow = {"1": {"class_type": "LoadImageFromUrl", "inputs": {"url": ""}}}
    built = WorkflowBuilder(workflow).set_image_url("1", "https://x/y.png").build()
    assert built["1"]["inputs"]["url"] == "https://x/y.png"
    with pytest.raises(WorkflowError, match="not an http"):
        WorkflowBuilder(workflow).set_image_url("1", "file:///etc/passwd")


def test_remove_nodes_then_validate_finds_the_dangling_link() -> None:
    builder = WorkflowBuilder(workflows.invert()).remove_nodes("Invert")
    assert set(builder.build()) == {"1", "3"}
    with pytest.raises(
        WorkflowError, match="node 3 input 'images': dangling link to missing node 2"
    ):
        builder.validate()


def test_prune_keeps_what_outputs_need() -> None:
    workflow = workflows.invert()
    workflow["8"] = {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}
    assert set(WorkflowBuilder(workflow).prune().build()) == {"1", "2", "3"}
    assert set(WorkflowBuilder(workflow).prune(keep=["8"]).build()) == {"1", "2", "3", "8"}


def test_validate_lists_every_problem_at_once() -> None:
    workflow: dict[str, Any] = workflows.invert()
    workflow["2"]["inputs"]["image"] = ["1", "zero"]
    workflow["4"] = {"inputs": {}}
    workflow["5"] = {"class_type": "ImageInvert"}
    workflow["6"] = {"class_type": "ImageInvert", "inputs": {"image": ["1", 3]}}
    with pytest.raises(WorkflowError) as caught:
        WorkflowBuilder(workflow).validate()
    problems = caught.value.problems  # type: ignore[attr-defined]
    assert problems == (
        "node 2 input 'image': output index 'zero' is not a whole number",
        "node 4 has no class_type",
        "node 5 (ImageInvert) has no 'inputs' object",
        "node 6 input 'image': node 1 has 1 outputs, not an output 3",
    )


def test_validate_against_a_peers_object_info() -> None:
    info = json.loads(
        (Path(__file__).parents[1] / "dispatch_core/data/object_info_subset.json").read_text()
    )
    workflow = workflows.invert()
    workflow["2"]["class_type"] = "FancyInvert"
    del workflow["1"]["inputs"]["width"]
    with pytest.raises(WorkflowError) as caught:
        WorkflowBuilder(workflow, object_info=info).validate()
    assert caught.value.problems == (  # type: ignore[attr-defined]
        "node 1 (EmptyImage): required input 'width' is missing",
        "node 2: the peer has no node class 'FancyInvert'",
    )


def test_validate_wants_an_output_node_and_nodes() -> None:
    with pytest.raises(WorkflowError, match="no output node"):
        WorkflowBuilder({"1": workflows.invert()["1"]}).validate()
    with pytest.raises(WorkflowError, match="the workflow is empty"):
        WorkflowBuilder({}).validate()


def test_ui_format_is_refused_with_the_export_hint(tmp_path: Path) -> None:
    ui = {"version": 0.4, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}
    assert is_ui_format(ui) and not is_ui_format(workflows.invert())
    with pytest.raises(WorkflowError, match=r"UI-format workflow.*Workflow → Export \(API\)"):
        WorkflowBuilder(ui)
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(ui))
    with pytest.raises(WorkflowError, match=r"ui.json: this is a UI-format"):
        load_workflow(path)


def test_load_workflow_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "1": {,}\n}')
    with pytest.raises(WorkflowError, match=r"broken.json: not valid JSON at line 2, column 9"):
        WorkflowBuilder.from_file(path)
    with pytest.raises(WorkflowError, match="cannot read"):
        load_workflow(tmp_path / "nope.json")
