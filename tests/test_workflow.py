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

import workflows

OBJECT_INFO: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "dispatch_core/data/object_info_subset.json").read_text()
)
UI_FORMAT = {"version": 0.4, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}


def two_samplers() -> dict[str, Any]:
    """txt2img with a second KSampler titled Refiner: "KSampler" names two nodes."""
    workflow = workflows.txt2img()
    workflow["10"] = copy.deepcopy(workflow["3"])
    workflow["10"]["_meta"] = {"title": "Refiner"}
    return workflow


def advanced_sampler() -> dict[str, Any]:
    """txt2img whose sampler is a KSamplerAdvanced: its seed input is `noise_seed`."""
    workflow = workflows.txt2img()
    inputs = workflow["3"]["inputs"]
    workflow["11"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {**inputs, "noise_seed": 7, "add_noise": "enable"},
    }
    del workflow["11"]["inputs"]["seed"]
    return workflow


def problems_of(builder: WorkflowBuilder) -> tuple[str, ...]:
    with pytest.raises(WorkflowError) as caught:
        builder.validate()
    problems: tuple[str, ...] = caught.value.problems  # type: ignore[attr-defined]
    return problems


class _Output:
    """Stands for an OutputFile of an earlier job: an async read() and a filename."""

    filename = "sub/made.png"

    async def read(self) -> bytes:
        return b"png"


# -- naming nodes ----------------------------------------------------------------------


def test_set_by_string_id() -> None:
    built = WorkflowBuilder(workflows.txt2img()).set("6", "text", "hat").build()
    assert built["6"]["inputs"]["text"] == "hat"


def test_set_by_int_id() -> None:
    built = WorkflowBuilder(workflows.txt2img()).set(3, "steps", 9).build()
    assert built["3"]["inputs"]["steps"] == 9


def test_set_by_title() -> None:
    built = WorkflowBuilder(workflows.txt2img()).set("Negative Prompt", "text", "dark").build()
    assert built["7"]["inputs"]["text"] == "dark"


def test_set_by_class() -> None:
    built = WorkflowBuilder(workflows.txt2img()).set("EmptyLatentImage", "batch_size", 2).build()
    assert built["5"]["inputs"]["batch_size"] == 2


def test_id_wins_over_a_title_that_looks_like_an_id() -> None:
    workflow = workflows.invert()
    workflow["3"]["_meta"]["title"] = "1"
    assert WorkflowBuilder(workflow).resolve("1") == "1"


def test_ambiguous_class_lists_the_matching_ids() -> None:
    with pytest.raises(WorkflowError, match="'KSampler' matches nodes 3, 10 by class") as caught:
        WorkflowBuilder(two_samplers()).set("KSampler", "seed", 1)
    assert caught.value.node == "KSampler"


def test_ambiguous_title_lists_the_matching_ids() -> None:
    workflow = workflows.txt2img()
    workflow["7"]["_meta"]["title"] = "Positive Prompt"
    with pytest.raises(WorkflowError, match="'Positive Prompt' matches nodes 6, 7 by title"):
        WorkflowBuilder(workflow).set("Positive Prompt", "text", "x")


def test_a_unique_title_picks_one_of_two_nodes_of_a_class() -> None:
    built = WorkflowBuilder(two_samplers()).set("Refiner", "seed", 5).build()
    assert (built["3"]["inputs"]["seed"], built["10"]["inputs"]["seed"]) == (1, 5)


def test_unknown_node_lists_what_exists() -> None:
    with pytest.raises(
        WorkflowError, match=r"no node 'Nope'.*1 \(Canvas\), 2 \(Invert\), 3 \(Save\)"
    ) as caught:
        WorkflowBuilder(workflows.invert()).set("Nope", "width", 1)
    assert caught.value.node == "Nope"


def test_unknown_node_listing_names_untitled_nodes_by_class() -> None:
    with pytest.raises(
        WorkflowError, match=r"4 \(CheckpointLoaderSimple\), 5 \(EmptyLatentImage\)"
    ):
        WorkflowBuilder(workflows.txt2img()).resolve(99)


def test_unknown_input_lists_the_nodes_inputs() -> None:
    with pytest.raises(
        WorkflowError,
        match=r"node 1 \(EmptyImage\) has no input 'widht'; "
        r"its inputs are batch_size, color, height, width",
    ) as caught:
        WorkflowBuilder(workflows.invert()).set("Canvas", "widht", 1)
    assert caught.value.node == "1"


def test_any_input_is_accepted_on_a_class_the_object_info_lacks() -> None:
    workflow = {"1": {"class_type": "MyCustomNode", "inputs": {}}}
    built = WorkflowBuilder(workflow).set("1", "anything", 3).build()
    assert built["1"]["inputs"] == {"anything": 3}


def test_set_on_a_node_without_inputs_says_so() -> None:
    with pytest.raises(WorkflowError, match="node 1 has no 'inputs' object"):
        WorkflowBuilder({"1": {"class_type": "MyCustomNode"}}).set("1", "a", 1)


# -- set_path and apply_overrides ------------------------------------------------------


def test_set_path_by_id() -> None:
    built = WorkflowBuilder(workflows.txt2img()).set_path("3.cfg", 5).build()
    assert built["3"]["inputs"]["cfg"] == 5


def test_set_path_with_a_title_holding_spaces_and_dots_splits_at_the_last_dot() -> None:
    workflow = workflows.txt2img()
    workflow["6"]["_meta"]["title"] = "Prompt v1.5 (SD 1.5)"
    built = WorkflowBuilder(workflow).set_path("Prompt v1.5 (SD 1.5).text", "x").build()
    assert built["6"]["inputs"]["text"] == "x"


@pytest.mark.parametrize("path", ["text", ".text", "6.", ""])
def test_set_path_without_node_and_input_is_refused(path: str) -> None:
    with pytest.raises(WorkflowError, match=r"expected NODE\.INPUT, such as '6\.text'"):
        WorkflowBuilder(workflows.txt2img()).set_path(path, 1)


def test_apply_overrides_by_class_and_title() -> None:
    built = (
        WorkflowBuilder(workflows.txt2img())
        .apply_overrides({"KSampler": {"seed": 5, "steps": 2}, "Positive Prompt": {"text": "hat"}})
        .build()
    )
    assert (built["3"]["inputs"]["seed"], built["3"]["inputs"]["steps"]) == (5, 2)
    assert built["6"]["inputs"]["text"] == "hat"


def test_apply_overrides_refuses_a_value_that_is_not_a_mapping() -> None:
    with pytest.raises(WorkflowError, match="override for 'KSampler' must be an object") as caught:
        WorkflowBuilder(workflows.txt2img()).apply_overrides({"KSampler": 5})  # type: ignore[dict-item]
    assert caught.value.node == "KSampler"


def test_apply_overrides_refuses_overrides_that_are_not_a_mapping() -> None:
    with pytest.raises(WorkflowError, match="overrides must be an object of node"):
        WorkflowBuilder(workflows.txt2img()).apply_overrides([("3", {})])  # type: ignore[arg-type]


def test_set_copies_the_value_it_is_given() -> None:
    value = {"nested": [1]}
    builder = WorkflowBuilder({"1": {"class_type": "MyCustomNode", "inputs": {}}}).set(
        "1", "a", value
    )
    value["nested"].append(2)
    assert builder.build()["1"]["inputs"]["a"] == {"nested": [1]}


# -- set_dimensions and randomize_seed -------------------------------------------------


def test_set_dimensions_sets_every_latent_and_image_source() -> None:
    workflow = workflows.txt2img()
    workflow["20"] = workflows.invert()["1"]
    workflow["21"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}}
    built = WorkflowBuilder(workflow).set_dimensions(768, 512).build()
    for node_id in ("5", "20", "21"):
        assert (built[node_id]["inputs"]["width"], built[node_id]["inputs"]["height"]) == (768, 512)


def test_set_dimensions_leaves_resizes_and_crops_fed_by_a_link_alone() -> None:
    workflow = workflows.invert()
    scale = {"upscale_method": "nearest-exact", "width": 64, "height": 32, "crop": "disabled"}
    workflow["4"] = {"class_type": "ImageScale", "inputs": {"image": ["2", 0], **scale}}
    workflow["5"] = {
        "class_type": "ImageCrop",
        "inputs": {"image": ["4", 0], "width": 8, "height": 8, "x": 0, "y": 0},
    }
    built = WorkflowBuilder(workflow).set_dimensions(100, 50).build()
    assert (built["1"]["inputs"]["width"], built["1"]["inputs"]["height"]) == (100, 50)
    assert (built["4"]["inputs"]["width"], built["5"]["inputs"]["width"]) == (64, 8)


def test_set_dimensions_on_a_named_node_only() -> None:
    workflow = workflows.invert()
    workflow["4"] = copy.deepcopy(workflow["1"])
    workflow["4"]["_meta"]["title"] = "Other"
    built = WorkflowBuilder(workflow).set_dimensions(3, 4, node="Canvas").build()
    assert (built["1"]["inputs"]["width"], built["1"]["inputs"]["height"]) == (3, 4)
    assert built["4"]["inputs"]["width"] == 16


def test_set_dimensions_skips_a_linked_width() -> None:
    workflow = workflows.invert()
    workflow["1"]["inputs"]["width"] = ["9", 0]
    with pytest.raises(WorkflowError, match="no source node with literal width and height"):
        WorkflowBuilder(workflow).set_dimensions(1, 1)


def test_set_dimensions_without_a_source_says_to_name_one() -> None:
    with pytest.raises(
        WorkflowError, match=r"no source node with literal width and height.*name one"
    ):
        WorkflowBuilder(workflows.load_invert()).set_dimensions(1, 1)


def test_set_dimensions_on_a_node_without_width_names_its_inputs() -> None:
    with pytest.raises(WorkflowError, match=r"node 2 \(ImageInvert\) has no input 'width'"):
        WorkflowBuilder(workflows.invert()).set_dimensions(1, 1, node="Invert")


def test_randomize_seed_sets_every_seed_and_noise_seed_from_the_rng() -> None:
    workflow = two_samplers()
    workflow.update(advanced_sampler())
    built = WorkflowBuilder(workflow).randomize_seed(rng=random.Random(7)).build()
    expected = random.Random(7)
    assert built["3"]["inputs"]["seed"] == expected.randrange(2**53)
    assert built["10"]["inputs"]["seed"] == expected.randrange(2**53)
    assert built["11"]["inputs"]["noise_seed"] == expected.randrange(2**53)


def test_randomize_seed_is_repeatable_with_the_same_seeded_rng() -> None:
    def seeds() -> dict[str, Any]:
        return WorkflowBuilder(two_samplers()).randomize_seed(rng=random.Random(1)).build()

    assert seeds() == seeds()


def test_randomize_seed_skips_a_linked_seed() -> None:
    workflow = two_samplers()
    workflow["10"]["inputs"]["seed"] = ["99", 0]
    built = WorkflowBuilder(workflow).randomize_seed(rng=random.Random(0)).build()
    assert built["10"]["inputs"]["seed"] == ["99", 0] and built["3"]["inputs"]["seed"] != 1


def test_randomize_seed_on_one_node() -> None:
    built = WorkflowBuilder(two_samplers()).randomize_seed("Refiner", rng=random.Random(1)).build()
    assert built["3"]["inputs"]["seed"] == 1
    assert built["10"]["inputs"]["seed"] == random.Random(1).randrange(2**53)


def test_randomize_seed_on_one_node_finds_its_noise_seed() -> None:
    builder = WorkflowBuilder(advanced_sampler())
    built = builder.randomize_seed("KSamplerAdvanced", rng=random.Random(2)).build()
    assert built["11"]["inputs"]["noise_seed"] == random.Random(2).randrange(2**53)
    assert "seed" not in built["11"]["inputs"]


def test_randomize_seed_of_a_named_input() -> None:
    workflow = {"1": {"class_type": "MyNoise", "inputs": {"salt": 1}}}
    built = WorkflowBuilder(workflow).randomize_seed(input="salt", rng=random.Random(3)).build()
    assert built["1"]["inputs"]["salt"] == random.Random(3).randrange(2**53)


def test_randomize_seed_without_a_seed_input_is_an_error() -> None:
    with pytest.raises(WorkflowError, match="no node with a literal seed or noise_seed input"):
        WorkflowBuilder(workflows.invert()).randomize_seed(rng=random.Random(0))


def test_randomize_seed_on_a_node_without_a_seed_names_its_inputs() -> None:
    with pytest.raises(WorkflowError, match=r"node 1 \(EmptyImage\) has no input 'seed'"):
        WorkflowBuilder(workflows.invert()).randomize_seed("Canvas", rng=random.Random(0))


# -- images ----------------------------------------------------------------------------


def test_set_image_with_bytes_gets_a_default_filename() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", b"data")
    assert builder.image_uploads == (ImageUpload("1", "image", b"data", "dispatch_1.png"),)


def test_set_image_with_bytearray_stores_bytes() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("1", bytearray(b"x"))
    assert type(builder.image_uploads[0].source) is bytes


def test_set_image_with_a_path_takes_its_file_name(tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"png")
    (upload,) = WorkflowBuilder(workflows.load_invert()).set_image("1", picture).image_uploads
    assert (upload.source, upload.filename) == (picture, "cat.png")
    (upload,) = WorkflowBuilder(workflows.load_invert()).set_image("1", str(picture)).image_uploads
    assert upload.filename == "cat.png"


def test_set_image_with_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        WorkflowError, match=r"image file '.*missing\.png' does not exist"
    ) as caught:
        WorkflowBuilder(workflows.load_invert()).set_image("Input", tmp_path / "missing.png")
    assert caught.value.node == "1"


def test_set_image_with_an_output_file_keeps_it_and_its_base_name() -> None:
    output = _Output()
    (upload,) = WorkflowBuilder(workflows.load_invert()).set_image("1", output).image_uploads
    assert upload.source is output and upload.filename == "made.png"


def test_set_image_filename_argument_wins() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("1", _Output(), filename="a/b.png")
    assert builder.image_uploads[0].filename == "b.png"


@pytest.mark.parametrize("data", [42, None, ["png"]])
def test_set_image_refuses_a_wrong_type(data: Any) -> None:
    with pytest.raises(WorkflowError, match="set_image takes bytes, a path or an output file"):
        WorkflowBuilder(workflows.load_invert()).set_image("1", data)


def test_set_image_refuses_a_sync_file_object(tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"png")
    with picture.open("rb") as file, pytest.raises(WorkflowError, match=r"async read\(\)"):
        WorkflowBuilder(workflows.load_invert()).set_image("1", file)


def test_set_image_on_a_node_without_that_input() -> None:
    with pytest.raises(WorkflowError, match=r"node 2 \(ImageInvert\) has no input 'picture'"):
        WorkflowBuilder(workflows.load_invert()).set_image("2", b"x", input="picture")


def test_with_uploaded_sets_the_subfolder_and_name_the_peer_gave() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", b"png")
    built = builder.with_uploaded({"1": "dispatch/made.png"})
    assert built["1"]["inputs"]["image"] == "dispatch/made.png"
    assert builder.build()["1"]["inputs"]["image"] == "none.png"


def test_with_uploaded_without_a_name_for_an_upload_is_an_error() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", b"png")
    with pytest.raises(WorkflowError, match="no uploaded name for node 1 input 'image'"):
        builder.with_uploaded({})


def test_two_images_on_one_node_are_both_kept_and_named_by_node_and_input() -> None:
    workflow = {
        "1": {"class_type": "ImageBatch", "inputs": {"image1": "a.png", "image2": "b.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    builder = (
        WorkflowBuilder(workflow)
        .set_image("1", b"a", input="image1")
        .set_image("1", b"b", input="image2")
    )
    assert [u.key for u in builder.image_uploads] == ["1.image1", "1.image2"]
    built = builder.with_uploaded({"1.image1": "up/a.png", "1.image2": "up/b.png"})
    assert built["1"]["inputs"] == {"image1": "up/a.png", "image2": "up/b.png"}
    with pytest.raises(WorkflowError, match="no uploaded name for node 1 input 'image1'"):
        builder.with_uploaded({"1": "up/a.png"})  # ambiguous: which input?


def test_set_of_the_same_input_drops_a_pending_upload() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", b"png")
    builder.set("1", "image", "other.png")
    assert builder.image_uploads == ()
    assert builder.with_uploaded({})["1"]["inputs"]["image"] == "other.png"


def test_set_of_another_input_keeps_the_pending_upload() -> None:
    workflow = {"1": {"class_type": "ImageBatch", "inputs": {"image1": "a.png", "image2": "b"}}}
    builder = WorkflowBuilder(workflow).set_image("1", b"png", input="image1")
    builder.set("1", "image2", "c.png")
    assert [u.key for u in builder.image_uploads] == ["1.image1"]


def test_set_image_url_sets_an_http_url() -> None:
    workflow = {"1": {"class_type": "LoadImageFromUrl", "inputs": {"url": ""}}}
    built = WorkflowBuilder(workflow).set_image_url("1", "https://x/y.png").build()
    assert built["1"]["inputs"]["url"] == "https://x/y.png"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y.png", "x/y.png", "http:///y"])
def test_set_image_url_refuses_anything_but_http(url: str) -> None:
    workflow = {"1": {"class_type": "LoadImageFromUrl", "inputs": {"url": ""}}}
    with pytest.raises(WorkflowError, match=r"is not an http:// or https:// URL"):
        WorkflowBuilder(workflow).set_image_url("1", url)


# -- removing and pruning --------------------------------------------------------------


def test_remove_node_by_title() -> None:
    assert set(WorkflowBuilder(workflows.invert()).remove_node("Invert").build()) == {"1", "3"}


def test_remove_node_drops_its_uploads() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("1", b"png").remove_node("1")
    assert builder.image_uploads == ()


def test_remove_nodes_by_mixed_names() -> None:
    built = WorkflowBuilder(workflows.txt2img()).remove_nodes("Negative Prompt", 9, "VAEDecode")
    assert set(built.build()) == {"3", "4", "5", "6"}


def test_remove_nodes_naming_one_node_twice() -> None:
    built = WorkflowBuilder(workflows.invert()).remove_nodes("Invert", "2", "ImageInvert").build()
    assert set(built) == {"1", "3"}


def test_remove_nodes_of_an_unknown_node_removes_nothing() -> None:
    builder = WorkflowBuilder(workflows.invert())
    with pytest.raises(WorkflowError, match="no node 'Nope'"):
        builder.remove_nodes("1", "Nope")
    assert set(builder.build()) == {"1", "2", "3"}


def test_prune_keeps_only_what_outputs_depend_on() -> None:
    workflow = workflows.txt2img()
    workflow["20"] = {"class_type": "ImageInvert", "inputs": {"image": ["8", 0]}}
    workflow["21"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}}
    built = WorkflowBuilder(workflow).prune().build()
    assert built == workflows.txt2img()


def test_prune_keeps_the_nodes_named_in_keep_and_their_inputs() -> None:
    workflow = workflows.invert()
    workflow["8"] = {"class_type": "ImageInvert", "_meta": {"title": "Spare"}, "inputs": {}}
    workflow["8"]["inputs"]["image"] = ["9", 0]
    workflow["9"] = {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1}}
    workflow["10"] = {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1}}
    assert set(WorkflowBuilder(workflow).prune(keep=["Spare"]).build()) == {"1", "2", "3", "8", "9"}


def test_prune_counts_a_preview_as_an_output() -> None:
    workflow = workflows.invert()
    workflow["3"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    assert set(WorkflowBuilder(workflow).prune().build()) == {"1", "2", "3"}


# -- validate --------------------------------------------------------------------------


def test_validate_passes_a_good_workflow_and_returns_the_builder() -> None:
    builder = WorkflowBuilder(workflows.txt2img(), object_info=OBJECT_INFO)
    assert builder.validate() is builder


def test_ui_format_is_recognised() -> None:
    assert is_ui_format(UI_FORMAT)
    assert not is_ui_format(workflows.invert())
    assert not is_ui_format([UI_FORMAT])


def test_ui_format_is_refused_with_the_export_hint() -> None:
    with pytest.raises(WorkflowError, match=r"UI-format workflow.*Workflow → Export \(API\)"):
        WorkflowBuilder(UI_FORMAT)


def test_a_workflow_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(WorkflowError, match="expected an object of node id → node, got list"):
        WorkflowBuilder([1, 2])  # type: ignore[arg-type]


def test_validate_names_a_node_without_class_type() -> None:
    workflow = {**workflows.invert(), "4": {"inputs": {}}}
    assert problems_of(WorkflowBuilder(workflow)) == ("node 4 has no class_type",)


def test_validate_names_a_node_without_inputs() -> None:
    workflow = {**workflows.invert(), "4": {"class_type": "ImageInvert"}}
    assert problems_of(WorkflowBuilder(workflow)) == (
        "node 4 (ImageInvert) has no 'inputs' object",
    )


def test_validate_names_a_node_that_is_not_an_object() -> None:
    workflow = {**workflows.invert(), "4": "ImageInvert"}
    assert problems_of(WorkflowBuilder(workflow)) == ("node 4 is not an object",)


def test_validate_finds_a_dangling_link_left_by_remove_node() -> None:
    builder = WorkflowBuilder(workflows.invert()).remove_node("Invert")
    with pytest.raises(
        WorkflowError, match="node 3 input 'images': dangling link to missing node 2"
    ):
        builder.validate()


@pytest.mark.parametrize("index", ["zero", 0.0, True, -1, None])
def test_validate_refuses_a_link_index_that_is_not_a_whole_number(index: Any) -> None:
    workflow = workflows.invert()
    workflow["2"]["inputs"]["image"] = ["1", index]
    assert problems_of(WorkflowBuilder(workflow)) == (
        f"node 2 input 'image': output index {index!r} is not a whole number",
    )


def test_validate_refuses_a_link_index_beyond_the_sources_outputs() -> None:
    workflow = workflows.txt2img()
    workflow["8"]["inputs"]["vae"] = ["4", 3]
    assert problems_of(WorkflowBuilder(workflow)) == (
        "node 8 input 'vae': node 4 has 3 outputs, not an output 3",
    )


def test_validate_accepts_an_int_link_source() -> None:
    workflow = workflows.invert()
    workflow["2"]["inputs"]["image"] = [1, 0]
    WorkflowBuilder(workflow).validate()


def test_validate_against_object_info_finds_an_unknown_class() -> None:
    workflow = workflows.invert()
    workflow["2"]["class_type"] = "FancyInvert"
    assert problems_of(WorkflowBuilder(workflow, object_info=OBJECT_INFO)) == (
        "node 2: the peer has no node class 'FancyInvert'",
    )


def test_validate_against_object_info_finds_a_missing_required_input() -> None:
    workflow = workflows.invert()
    del workflow["1"]["inputs"]["width"]
    assert problems_of(WorkflowBuilder(workflow, object_info=OBJECT_INFO)) == (
        "node 1 (EmptyImage): required input 'width' is missing",
    )


def test_validate_without_object_info_does_not_check_classes() -> None:
    workflow = workflows.invert()
    workflow["2"]["class_type"] = "FancyInvert"
    WorkflowBuilder(workflow).validate()


def test_validate_wants_an_output_node() -> None:
    with pytest.raises(WorkflowError, match=r"no output node \(SaveImage, PreviewImage, …\)"):
        WorkflowBuilder({"1": workflows.invert()["1"]}).validate()


def test_validate_counts_an_unknown_save_class_as_an_output() -> None:
    workflow = workflows.invert()
    workflow["3"]["class_type"] = "SaveImageExtended"
    WorkflowBuilder(workflow).validate()


def test_validate_refuses_an_empty_workflow() -> None:
    assert problems_of(WorkflowBuilder({})) == ("the workflow is empty",)


def test_validate_lists_every_problem_in_one_error() -> None:
    workflow: dict[str, Any] = workflows.invert()
    del workflow["3"]  # no output node left
    workflow["2"]["inputs"]["image"] = ["1", "zero"]
    workflow["4"] = {"inputs": {}}
    workflow["5"] = {"class_type": "ImageInvert"}
    workflow["6"] = {"class_type": "ImageInvert", "inputs": {"image": ["1", 3]}}
    workflow["7"] = {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}}
    workflow["8"] = {"class_type": "FancyInvert", "inputs": {}}
    workflow["9"] = {"class_type": "EmptyImage", "inputs": {"width": 1}}
    with pytest.raises(WorkflowError) as caught:
        WorkflowBuilder(workflow, object_info=OBJECT_INFO).validate()
    problems = (
        "node 2 input 'image': output index 'zero' is not a whole number",
        "node 4 has no class_type",
        "node 5 (ImageInvert) has no 'inputs' object",
        "node 6 input 'image': node 1 has 1 outputs, not an output 3",
        "node 7 input 'image': dangling link to missing node 99",
        "node 8: the peer has no node class 'FancyInvert'",
        "node 9 (EmptyImage): required input 'height' is missing",
        "node 9 (EmptyImage): required input 'batch_size' is missing",
        "node 9 (EmptyImage): required input 'color' is missing",
        "the workflow has no output node (SaveImage, PreviewImage, …)",
    )
    assert caught.value.problems == problems  # type: ignore[attr-defined]
    assert str(caught.value) == "the workflow is not valid:\n" + "\n".join(
        f"  {p}" for p in problems
    )
    assert caught.value.node == "2"


# -- copies ----------------------------------------------------------------------------


def test_no_operation_mutates_the_input(tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"png")
    original = two_samplers()
    original["20"] = workflows.load_invert()["1"]
    before = copy.deepcopy(original)
    builder = (
        WorkflowBuilder(original)
        .set("6", "text", "a blue hat")
        .set_path("Negative Prompt.text", "dark")
        .apply_overrides({"Refiner": {"steps": 2}})
        .set_dimensions(8, 8)
        .randomize_seed(rng=random.Random(0))
        .set_image("20", picture)
        .remove_node("7")
        .prune()
    )
    builder.with_uploaded({"20": "x.png"})
    assert original == before


def test_build_returns_independent_copies() -> None:
    builder = WorkflowBuilder(workflows.invert())
    first = builder.build()
    first["1"]["inputs"]["width"] = 1
    second = builder.build()
    assert second["1"]["inputs"]["width"] == 16 and second is not builder.build()


def test_copy_is_independent_of_the_original() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("1", b"png")
    copied = builder.copy().set("1", "image", "other.png")
    assert builder.build()["1"]["inputs"]["image"] == "none.png"
    assert copied.build()["1"]["inputs"]["image"] == "other.png"
    assert (len(builder.image_uploads), len(copied.image_uploads)) == (1, 0)


def test_copy_keeps_the_object_info() -> None:
    copied = WorkflowBuilder(workflows.invert(), object_info={}).copy()
    with pytest.raises(WorkflowError, match="the peer has no node class 'EmptyImage'"):
        copied.validate()


def test_repr_counts_nodes_and_uploads() -> None:
    builder = WorkflowBuilder(workflows.load_invert()).set_image("1", b"png")
    assert repr(builder) == "WorkflowBuilder(3 nodes, 1 uploads)"


# -- files -----------------------------------------------------------------------------


def test_from_file_reads_an_api_workflow(tmp_path: Path) -> None:
    path = tmp_path / "invert.json"
    path.write_text(json.dumps(workflows.invert()))
    assert WorkflowBuilder.from_file(path).build() == workflows.invert()


def test_load_workflow_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(workflows.invert()).encode())
    assert load_workflow(path) == workflows.invert()


def test_from_file_names_the_file_line_and_column_of_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "1": {,}\n}')
    with pytest.raises(WorkflowError, match=r"broken\.json: not valid JSON at line 2, column 9"):
        WorkflowBuilder.from_file(path)


def test_load_workflow_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"nope\.json: cannot read: No such file"):
        load_workflow(tmp_path / "nope.json")


def test_load_workflow_names_a_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(WorkflowError, match=r"image\.png: not UTF-8 text"):
        load_workflow(path)


def test_load_workflow_refuses_a_ui_format_file_with_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(UI_FORMAT))
    with pytest.raises(WorkflowError, match=r"ui\.json: this is a UI-format.*Export \(API\)"):
        load_workflow(path)


def test_load_workflow_refuses_json_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(WorkflowError, match=r"list\.json: expected a JSON object"):
        load_workflow(path)
