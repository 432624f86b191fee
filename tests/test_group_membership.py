"""Remote groups in the UI workflow: the title marker, and which nodes each group holds.

The fixtures are UI workflows as the frontend saves them (`extra_pnginfo.workflow`):
groups with `bounding` [x, y, w, h], nodes with `pos` and `size`, subgraphs under
`definitions.subgraphs`. A node's rectangle starts 30 above `pos` (its title bar).
"""

from __future__ import annotations

from typing import Any

import pytest

from dispatch_core import GroupError
from dispatch_core.groups import RemoteGroup, Target, parse_title, remote_groups, titled

GPU_B = Target("server", "gpu-b")


def node(node_id: int, x: float, y: float, w: float = 100, h: float = 60, **extra: Any) -> Any:
    return {
        "id": node_id,
        "type": extra.pop("type", "ImageInvert"),
        "pos": [x, y],
        "size": [w, h],
    } | extra


def group(group_id: int, title: str, x: float, y: float, w: float, h: float) -> Any:
    return {"id": group_id, "title": title, "bounding": [x, y, w, h], "flags": {}}


def workflow(nodes: list[Any], groups: list[Any], **extra: Any) -> dict[str, Any]:
    return {"version": 0.4, "nodes": nodes, "links": [], "groups": groups} | extra


def members(found: tuple[RemoteGroup, ...]) -> dict[str, set[str]]:
    return {g.key: set(g.nodes) for g in found}


# --- the title marker ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "name", "target"),
    [
        ("Upscale [server: gpu-b]", "Upscale", GPU_B),
        ("Upscale [route: upscale]", "Upscale", Target("route", "upscale")),
        ("Txt2img [fan-out: generate]", "Txt2img", Target("fan-out", "generate")),
        ("Upscale[SERVER:gpu-b]  ", "Upscale", GPU_B),
        ("[server: gpu-b]", "", GPU_B),
        ("Faces [WIP]", "Faces [WIP]", None),  # not one of the three kinds: a plain title
        ("Notes [todo: fix]", "Notes [todo: fix]", None),
        ("Upscale [server: ]", "Upscale [server: ]", None),
        ("Upscale [server: a/b]", "Upscale [server: a/b]", None),  # not a name config allows
        ("[server: gpu-b] Upscale", "[server: gpu-b] Upscale", None),  # only at the end
        ("Group", "Group", None),
    ],
)
def test_parse_title(title: str, name: str, target: Target | None) -> None:
    assert parse_title(title) == (name, target)


def test_titled_writes_what_parse_title_reads() -> None:
    assert titled("Upscale", GPU_B) == "Upscale [server: gpu-b]"
    assert titled("Upscale [server: gpu-b]", Target("route", "up")) == "Upscale [route: up]"
    assert titled("Upscale [server: gpu-b]", None) == "Upscale"
    for target in (GPU_B, Target("route", "r 1"), Target("fan-out", "generate")):
        assert parse_title(titled("Edit", target)) == ("Edit", target)


def test_target_text_round_trips() -> None:
    assert str(Target("fan-out", "gen")) == "fan-out:gen"
    assert Target.parse("fan-out:gen") == Target("fan-out", "gen")
    for bad in ("gpu-b", "here:x", "server:", "server: x", "server:a/b"):
        with pytest.raises(ValueError, match="not a remote group target"):
            Target.parse(bad)


def test_a_target_names_the_route_and_server_of_its_jobs() -> None:
    assert (Target("server", "gpu-b").route, Target("server", "gpu-b").server) == (
        "server:gpu-b",
        "gpu-b",
    )
    for kind in ("route", "fan-out"):
        assert (Target(kind, "gen").route, Target(kind, "gen").server) == ("gen", None)


def test_label_names_the_group_without_its_marker() -> None:
    assert RemoteGroup("3", "Upscale [server: gpu-b]", GPU_B, frozenset()).label == "'Upscale'"
    assert RemoteGroup("3", "[server: gpu-b]", GPU_B, frozenset()).label == "group 3"


# --- which nodes are in which group -----------------------------------------------------------

REMOTE = "Edit [server: gpu-b]"
# A group at (0, 0) 400×300 and nodes 100×60 whose rectangle is (x, y - 30, 100, 90).
CASES = [
    ("inside", [node(1, 50, 50)], [group(1, REMOTE, 0, 0, 400, 300)], {"1": {"1"}}),
    (
        "centre outside, corner inside",
        [node(1, 350, 50)],
        [group(1, REMOTE, 0, 0, 400, 300)],
        {"1": set()},
    ),
    # body centre at y=300 (outside), rectangle centre at y=285 with the title bar: inside
    ("the title bar counts", [node(1, 50, 270)], [group(1, REMOTE, 0, 0, 400, 300)], {"1": {"1"}}),
    ("left edge is in", [node(1, -50, 50)], [group(1, REMOTE, 0, 0, 400, 300)], {"1": {"1"}}),
    ("right edge is out", [node(1, 350, 50)], [group(1, REMOTE, 0, 0, 400, 300)], {"1": set()}),
    (
        "collapsed: only its title bar",
        [node(1, 50, 300, h=200, flags={"collapsed": True})],
        [group(1, REMOTE, 0, 0, 400, 300)],
        {"1": {"1"}},
    ),
    (
        "old workflows save positions as objects",
        [{"id": 1, "type": "X", "pos": {"0": 50, "1": 50}, "size": {"0": 100, "1": 60}}],
        [group(1, REMOTE, 0, 0, 400, 300)],
        {"1": {"1"}},
    ),
    ("a plain group is no remote group", [node(1, 50, 50)], [group(1, "Edit", 0, 0, 400, 300)], {}),
    ("an empty group", [node(1, 900, 900)], [group(1, REMOTE, 0, 0, 400, 300)], {"1": set()}),
    (
        "nested: the innermost takes its nodes",
        [node(1, 50, 80), node(2, 250, 180)],
        [group(1, REMOTE, 0, 0, 600, 400), group(2, "Up [server: gpu-c]", 200, 100, 200, 200)],
        {"1": {"1"}, "2": {"2"}},
    ),
    (
        "nested: a plain group inside a remote one takes nothing",
        [node(1, 50, 80), node(2, 250, 180)],
        [group(1, REMOTE, 0, 0, 600, 400), group(2, "Details", 200, 100, 200, 200)],
        {"1": {"1", "2"}},
    ),
    (
        "overlapping: each node in one of them",
        [node(1, 50, 80), node(2, 450, 80)],
        [group(1, REMOTE, 0, 0, 400, 300), group(2, "Up [route: up]", 300, 0, 400, 300)],
        {"1": {"1"}, "2": {"2"}},
    ),
    (
        "malformed entries are skipped",
        [node(1, 50, 50), {"id": 2, "pos": [1]}, {"pos": [50, 50], "size": [10, 10]}, "x"],
        [group(1, REMOTE, 0, 0, 400, 300), {"id": 2, "title": REMOTE}, {"title": 3}],
        {"1": {"1"}},
    ),
]


@pytest.mark.parametrize(
    ("nodes", "groups", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_membership(nodes: list[Any], groups: list[Any], expected: dict[str, set[str]]) -> None:
    assert members(remote_groups(workflow(nodes, groups))) == expected


def test_a_group_carries_its_title_and_target() -> None:
    (found,) = remote_groups(workflow([node(1, 50, 50)], [group(7, REMOTE, 0, 0, 400, 300)]))
    assert found == RemoteGroup("7", REMOTE, GPU_B, frozenset({"1"}))


def test_a_node_in_two_groups_neither_inside_the_other_is_refused() -> None:
    nodes = [node(5, 320, 80, type="KSampler")]
    groups = [group(1, REMOTE, 0, 0, 400, 300), group(2, "Up [route: up]", 300, 0, 400, 300)]
    with pytest.raises(GroupError) as caught:
        remote_groups(workflow(nodes, groups))
    assert str(caught.value) == (
        "node 5 (KSampler) is in remote groups 'Edit' and 'Up', and neither is inside the "
        "other; move the node, or one group inside the other"
    )
    assert (caught.value.node, caught.value.group) == ("5", "1")


def test_two_groups_of_the_same_rectangle_are_ambiguous() -> None:
    groups = [group(1, REMOTE, 0, 0, 400, 300), group(2, "Up [route: up]", 0, 0, 400, 300)]
    with pytest.raises(GroupError, match="neither is inside the other"):
        remote_groups(workflow([node(1, 50, 50)], groups))


# --- subgraphs ---------------------------------------------------------------------------

SUB = "a1b2c3d4-0000-4000-8000-000000000001"
INNER = "a1b2c3d4-0000-4000-8000-000000000002"


def subgraph(sub_id: str, nodes: list[Any], groups: list[Any] | None = None) -> dict[str, Any]:
    return {"id": sub_id, "name": "Sub", "nodes": nodes, "links": [], "groups": groups or []}


def test_a_subgraph_node_in_a_group_puts_its_inner_nodes_in() -> None:
    definition = subgraph(SUB, [node(5, 0, 0), node(6, 200, 0)])
    found = remote_groups(
        workflow(
            [node(12, 50, 50, type=SUB), node(13, 900, 900, type=SUB)],
            [group(1, REMOTE, 0, 0, 400, 300)],
            definitions={"subgraphs": [definition]},
        )
    )
    assert members(found) == {"1": {"12:5", "12:6"}}  # node 13 uses it too, outside the group


def test_a_subgraph_node_titled_with_a_target_is_a_remote_group_of_its_own() -> None:
    definition = subgraph(
        SUB, [node(5, 50, 50), node(6, 900, 900)], [group(3, "Up [server: gpu-c]", 0, 0, 400, 300)]
    )
    found = remote_groups(
        workflow(
            [
                node(12, 50, 50, type=SUB, title="Make [route: generate]"),
                node(14, 600, 50, type=SUB, title="Plain"),
                node(15, 50, 200),
            ],
            [group(1, REMOTE, 0, 0, 400, 400)],
            definitions={"subgraphs": [definition]},
        )
    )
    # its own target beats the group drawn around it; a group in its definition beats both
    assert members(found) == {
        "1": {"15"},
        "node-12": {"12:6"},
        "12:3": {"12:5"},
        "14:3": {"14:5"},
    }
    (made,) = [g for g in found if g.key == "node-12"]
    assert made.target == Target("route", "generate") and made.label == "'Make'"


def test_a_group_inside_a_subgraph_is_one_group_per_subgraph_node() -> None:
    definition = subgraph(
        SUB, [node(5, 50, 50), node(6, 900, 900)], [group(3, REMOTE, 0, 0, 400, 300)]
    )
    found = remote_groups(
        workflow(
            [node(12, 0, 0, type=SUB), node(14, 300, 0, type=SUB)],
            [],
            definitions={"subgraphs": [definition]},
        )
    )
    assert members(found) == {"12:3": {"12:5"}, "14:3": {"14:5"}}


def test_a_group_inside_a_subgraph_is_inner_to_the_group_around_the_subgraph_node() -> None:
    definition = subgraph(
        SUB, [node(5, 50, 50), node(6, 900, 900)], [group(3, "Up [server: gpu-c]", 0, 0, 400, 300)]
    )
    found = remote_groups(
        workflow(
            [node(12, 50, 50, type=SUB)],
            [group(1, REMOTE, 0, 0, 400, 300)],
            definitions={"subgraphs": [definition]},
        )
    )
    assert members(found) == {"1": {"12:6"}, "12:3": {"12:5"}}


def test_subgraphs_nest_and_a_definition_that_contains_itself_ends() -> None:
    inner = subgraph(INNER, [node(2, 0, 0)])
    outer = subgraph(SUB, [node(7, 0, 0, type=INNER), node(8, 0, 200, type=SUB)])
    found = remote_groups(
        workflow(
            [node(12, 50, 50, type=SUB)],
            [group(1, REMOTE, 0, 0, 400, 300)],
            definitions={"subgraphs": [outer, inner]},
        )
    )
    nodes = members(found)["1"]
    assert "12:7:2" in nodes
    assert "12:8:7:2" in nodes  # the self-containing definition is walked only so deep
    assert max(n.count(":") for n in nodes) <= 33
