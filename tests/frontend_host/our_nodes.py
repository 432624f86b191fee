"""This package's nodes as ComfyUI 0.3.64's `/object_info` describes them, for the page.

The package is loaded as ComfyUI loads a custom node (`custom_nodes/ComfyUI-Dispatch`),
with the stand-ins of `tests/comfy_host` for ComfyUI's modules, and its nodes read the
host's own DispatchService (its templates and routes fill their lists). Each class is
described as `server.node_info` does for a classic node.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STAND_INS = ROOT / "tests" / "comfy_host"
PACKAGE = "ComfyUI-Dispatch"


def load_package(service: Any) -> ModuleType:
    """The package, its nodes reading `service`; ComfyUI's modules are the stand-ins."""
    if str(STAND_INS) not in sys.path:
        sys.path.append(str(STAND_INS))
    spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py")
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)  # no PromptServer: registers no routes
    package.nodes.host._service = service
    return package


def node_info(package: ModuleType, name: str) -> dict[str, Any]:
    """One class as ComfyUI 0.3.64's `node_info` answers for a classic node."""
    cls = package.NODE_CLASS_MAPPINGS[name]
    inputs = cls.INPUT_TYPES()
    info = {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": name,
        "display_name": package.NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": f"custom_nodes.{PACKAGE}",
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    return json.loads(json.dumps(info))  # as the JSON answer has it


def node_defs(package: ModuleType) -> dict[str, Any]:
    return {name: node_info(package, name) for name in package.NODE_CLASS_MAPPINGS}
