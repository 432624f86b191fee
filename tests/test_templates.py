"""The template store: names, formats, parameters, and what each mistake says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatch_core.errors import NotFound, TemplateError, WorkflowError
from dispatch_core.templates import TemplateStore, suggest_parameters

from workflows import invert, load_invert, txt2img


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path / "templates")


def test_suggested_parameters_follow_the_sampler() -> None:
    assert suggest_parameters(txt2img()) == {
        "seed": ("3.seed",),
        "steps": ("3.steps",),
        "denoise": ("3.denoise",),
        "prompt": ("6.text",),
        "negative": ("7.text",),
        "width": ("5.width",),
        "height": ("5.height",),
    }
    assert suggest_parameters(load_invert()) == {"image": ("1.image",)}
    assert suggest_parameters(invert())["width"] == ("1.width",)


def test_save_load_round_trip_with_named_parameters(store: TemplateStore) -> None:
    saved = store.save(
        "portrait", txt2img(), parameters={"prompt": "Positive Prompt.text", "seed": ["3.seed"]}
    )
    assert saved.parameters == {"prompt": ("6.text",), "seed": ("3.seed",)}
    loaded = store.load("portrait")
    assert loaded.workflow == txt2img()
    assert loaded.fingerprint == saved.fingerprint == store.fingerprint("portrait")
    assert store.names() == ["portrait"]
    built = loaded.builder({"prompt": "a cat", "seed": 7, "Negative Prompt.text": "dark"}).build()
    assert built["6"]["inputs"]["text"] == "a cat"
    assert built["3"]["inputs"]["seed"] == 7
    assert built["7"]["inputs"]["text"] == "dark"
    built = loaded.builder({"5": {"width": 128}}).build()
    assert built["5"]["inputs"]["width"] == 128


def test_a_plain_api_file_dropped_in_gets_suggested_parameters(store: TemplateStore) -> None:
    store.folder.mkdir(parents=True)
    (store.folder / "dropped.json").write_text(json.dumps(txt2img()))
    template = store.load("dropped")
    assert template.parameters["prompt"] == ("6.text",)
    assert template.summary()["nodes"] == 7


def test_image_parameter_takes_bytes_as_an_upload(store: TemplateStore) -> None:
    template = store.save("edit", load_invert())
    builder = template.builder({"image": b"\x89PNG..."})
    (upload,) = builder.image_uploads
    assert (upload.node_id, upload.input, upload.source) == ("1", "image", b"\x89PNG...")


def test_fingerprint_changes_with_the_file(store: TemplateStore) -> None:
    before = store.save("a", invert()).fingerprint
    after = store.save("a", invert(color=0x00FF00)).fingerprint
    assert before != after
    assert store.fingerprint("missing") == ""


def test_rename_and_delete(store: TemplateStore) -> None:
    store.save("a", invert())
    store.save("b", invert())
    with pytest.raises(TemplateError, match="'b' exists already"):
        store.rename("a", "b")
    assert store.rename("a", "c").name == "c"
    assert store.names() == ["b", "c"]
    store.delete("b")
    with pytest.raises(NotFound, match="no template 'b'"):
        store.delete("b")


def test_unreadable_template_is_listed_with_its_error(store: TemplateStore) -> None:
    store.save("good", invert())
    (store.folder / "broken.json").write_text("{not json")
    listing = {t["name"]: t for t in store.list()}
    assert "line 1, column 2" in listing["broken"]["error"]
    assert listing["good"]["nodes"] == 3


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../escape", "bad template name"),
        ("a/b", "bad template name"),
        ("..", "bad template name"),
        ("", "bad template name"),
        (".hidden", "bad template name"),
        ("x" * 81, "bad template name"),
        ("a\\b", "bad template name"),
    ],
)
def test_names_cannot_leave_the_folder(store: TemplateStore, name: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        store.save(name, invert())
    with pytest.raises(TemplateError, match=message):
        store.load(name)


def test_name_may_carry_the_json_suffix(store: TemplateStore) -> None:
    store.save("with suffix.json", invert())
    assert store.names() == ["with suffix"]


@pytest.mark.parametrize(
    ("workflow", "parameters", "message"),
    [
        ({"nodes": [], "links": [], "version": 0.4}, None, r"Export \(API\)"),
        ({}, None, "API-format workflow"),
        ([1, 2], None, "API-format workflow"),
        ({"1": {"inputs": {}}}, None, "node 1 has no 'class_type'"),
        ({"1": {"class_type": "X"}}, None, "node 1 has no 'inputs'"),
        (txt2img(), {"prompt": "99.text"}, "no node '99'"),
        (txt2img(), {"prompt": "6.txt"}, r"node 6 \(CLIPTextEncode\) has no input 'txt'"),
        (txt2img(), {"prompt": "text"}, "is not NODE.INPUT"),
        (txt2img(), {"prompt": 6}, "must name NODE.INPUT targets"),
        (txt2img(), {"a.b": "6.text"}, "without dots"),
        (txt2img(), ["6.text"], "'parameters' must be an object"),
    ],
)
def test_bad_templates_are_refused_and_nothing_is_written(
    store: TemplateStore, workflow: object, parameters: object, message: str
) -> None:
    with pytest.raises(WorkflowError, match=message):
        store.save("t", workflow, parameters=parameters)  # type: ignore[arg-type]
    assert not store.path("t").exists()


def test_unknown_parameter_lists_the_known_ones(store: TemplateStore) -> None:
    template = store.save("gen", txt2img())
    with pytest.raises(TemplateError, match=r"no parameter 'style' \(its parameters: denoise"):
        template.builder({"style": "noir"})


def test_missing_template_lists_the_saved_ones(store: TemplateStore) -> None:
    store.save("one", invert())
    with pytest.raises(NotFound, match=r"no template 'two' .*\(templates: one\)"):
        store.load("two")


def test_ui_format_file_dropped_in_says_how_to_export(store: TemplateStore) -> None:
    store.folder.mkdir(parents=True)
    (store.folder / "ui.json").write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(TemplateError, match=r"ui.json: this is a UI-format workflow"):
        store.load("ui")
