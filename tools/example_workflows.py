"""Write `example_workflows/`: the UI-format workflows ComfyUI's template browser lists.

    python3 tools/example_workflows.py

ComfyUI serves a custom node's `example_workflows/NAME.json` in *Workflow → Browse
Templates*, with `NAME.jpg` as its picture. Each workflow here is written from a short
description (nodes, their widget values, the links between them) so that a change of the
nodes' widgets is one edit, and `tests/test_examples.py` checks the files against the
nodes' inputs. The pictures are drawn here too: the nodes as boxes, the links as lines.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "example_workflows"

HOW = (
    "Before the first run: in the Dispatch tab (sidebar), add your ComfyUI servers, a route "
    "for each workflow type ('generate', 'edit'), and save the templates this workflow names: "
    "upload scripting/txt2img_api.json as 'txt2img' and scripting/edit_api.json as 'edit', "
    "or save any API workflow of your own under those names."
)


OUTPUTS = [
    ("images", "IMAGE"), ("result", "STRING"), ("mask", "MASK"),
    ("latent", "LATENT"), ("video", "VIDEO"), ("audio", "AUDIO"),
]  # fmt: skip
"""The Remote Dispatch nodes' outputs, in slot order."""


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: list[Any]
    title: str = ""
    inputs: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    size: tuple[int, int] = (320, 330)


def dispatch(node_id: int, pos: tuple[int, int], template: str, route: str, **more: Any) -> Node:
    """A Remote Dispatch node; widgets in the order of its INPUT_TYPES."""
    widgets = [
        template, route, "(route's servers)", more.get("overrides", "{}"),
        more.get("seed", 0), more.get("control", "randomize"), 0, "", False,
    ]  # fmt: skip
    return Node(
        node_id, "RemoteDispatch", pos, widgets, more.get("title", ""),
        inputs=[("prompt", "STRING"), ("image", "IMAGE")],
        outputs=OUTPUTS,
    )  # fmt: skip


def fan_out(node_id: int, pos: tuple[int, int], template: str, route: str, title: str) -> Node:
    widgets = [template, route, "", "partial", "{}", 100, "increment", 0, "", False]
    return Node(
        node_id, "RemoteDispatchFanOut", pos, widgets, title,
        inputs=[("prompt", "STRING"), ("image", "IMAGE")],
        outputs=OUTPUTS,
    )  # fmt: skip


def text(node_id: int, pos: tuple[int, int], value: str, title: str) -> Node:
    return Node(
        node_id, "PrimitiveStringMultiline", pos, [value], title,
        outputs=[("STRING", "STRING")], size=(300, 120),
    )  # fmt: skip


def note(node_id: int, pos: tuple[int, int], value: str) -> Node:
    return Node(node_id, "Note", pos, [value], "How to use", size=(300, 200))


def save(node_id: int, pos: tuple[int, int], prefix: str) -> Node:
    return Node(
        node_id, "SaveImage", pos, [prefix], "", inputs=[("images", "IMAGE")], size=(300, 300)
    )


Link = tuple[int, int, int, int]
"""(from node, its output slot, to node, its input slot)."""


def workflow(nodes: list[Node], links: list[Link]) -> dict[str, Any]:
    """The UI format (version 0.4) the frontend saves and loads."""
    by_id = {n.id: n for n in nodes}
    rows = [
        [i, a, out, b, slot, by_id[a].outputs[out][1]]
        for i, (a, out, b, slot) in enumerate(links, start=1)
    ]
    return {
        "last_node_id": max(by_id),
        "last_link_id": len(rows),
        "nodes": [_node(n, order, rows) for order, n in enumerate(nodes)],
        "links": rows,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.9, "offset": [40, 40]}},
        "version": 0.4,
    }


def _node(node: Node, order: int, rows: list[list[Any]]) -> dict[str, Any]:
    into = {row[4]: row[0] for row in rows if row[3] == node.id}
    out_of: dict[int, list[int]] = {}
    for row in rows:
        if row[1] == node.id:
            out_of.setdefault(row[2], []).append(row[0])
    found: dict[str, Any] = {
        "id": node.id,
        "type": node.type,
        "pos": list(node.pos),
        "size": list(node.size),
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": [
            {"name": n, "type": t, "link": into.get(i)} for i, (n, t) in enumerate(node.inputs)
        ],
        "outputs": [
            {"name": n, "type": t, "links": out_of.get(i, [])}
            for i, (n, t) in enumerate(node.outputs)
        ],
        "properties": {"Node name for S&R": node.type},
        "widgets_values": node.widgets,
    }
    if node.title:
        found["title"] = node.title
    return found


def examples() -> dict[str, tuple[list[Node], list[Link]]]:
    return {
        "remote_txt2img": (
            [
                note(1, (20, 20), HOW),
                text(2, (20, 260), "a lighthouse at dusk, film grain", "Prompt"),
                dispatch(3, (360, 20), "txt2img", "generate"),
            ],
            [(2, 0, 3, 0)],
        ),
        "generate_then_edit": (
            [
                note(1, (20, 20), HOW),
                text(2, (20, 260), "a red jacket, studio light", "Prompt"),
                dispatch(3, (360, 20), "txt2img", "generate", title="Generate on one GPU"),
                dispatch(4, (720, 20), "edit", "edit", title="Edit on another"),
            ],
            [(2, 0, 3, 0), (3, 0, 4, 1)],
        ),
        "fan_out_seeds": (
            [
                note(1, (20, 20), HOW + " Every enabled server of the route runs it once, "
                     "server i with seed + i."),
                text(2, (20, 260), "a mountain village, morning fog", "Prompt"),
                fan_out(3, (360, 20), "txt2img", "generate", "Fan-out over the route"),
                save(4, (720, 20), "fan_out"),
            ],
            [(2, 0, 3, 0), (3, 0, 4, 0)],
        ),
    }  # fmt: skip


def thumbnail(nodes: list[Node], links: list[Link], path: Path) -> None:
    """A small picture of the graph: what the template browser shows for it."""
    from PIL import Image, ImageDraw

    width, height = 320, 240
    right = max(n.pos[0] + n.size[0] for n in nodes)
    bottom = max(n.pos[1] + n.size[1] for n in nodes)
    scale = min((width - 24) / right, (height - 42) / bottom)
    picture = Image.new("RGB", (width, height), (32, 32, 36))
    draw = ImageDraw.Draw(picture)
    boxes = {}
    for n in nodes:
        x, y = 12 + n.pos[0] * scale, 30 + n.pos[1] * scale
        boxes[n.id] = (x, y, x + n.size[0] * scale, y + n.size[1] * scale)
    for a, _, b, _ in links:
        (_, ay, ax2, ay2), (bx, by, _, by2) = boxes[a], boxes[b]
        draw.line([(ax2, (ay + ay2) / 2), (bx, (by + by2) / 2)], fill=(120, 180, 255), width=2)
    for n in nodes:
        ours = n.type.startswith("RemoteDispatch")
        fill = (60, 90, 140) if ours else (70, 70, 76)
        draw.rounded_rectangle(boxes[n.id], radius=4, fill=fill, outline=(150, 150, 160))
        draw.text((boxes[n.id][0] + 4, boxes[n.id][1] + 3), n.title or n.type, fill="white")
    draw.text((12, 8), path.stem.replace("_", " "), fill=(230, 230, 230))
    picture.save(path, format="JPEG", quality=85)


def main() -> None:
    FOLDER.mkdir(exist_ok=True)
    for name, (nodes, links) in examples().items():
        text_ = json.dumps(workflow(nodes, links), indent=2) + "\n"
        (FOLDER / f"{name}.json").write_text(text_, encoding="utf-8")
        thumbnail(nodes, links, FOLDER / f"{name}.jpg")
        print(FOLDER / f"{name}.json", file=sys.stderr)


if __name__ == "__main__":
    main()
