"""The public surface is small and deliberate: a change to it shows up here."""

from __future__ import annotations

import ast
from pathlib import Path

import dispatch_core

PUBLIC = {
    "ConfigConflict",
    "DispatchService",
    "JobRecord",
    "Template",
    "TemplateError",
    "TemplateStore",
    "BadResponse",
    "CacheSettings",
    "Config",
    "ConfigError",
    "DispatchError",
    "DispatchResult",
    "DispatchTimeout",
    "Dispatcher",
    "DispatcherClosed",
    "ExecutionFailed",
    "GroupError",
    "InputError",
    "Interrupted",
    "JobHandle",
    "JobSpec",
    "JobState",
    "Journal",
    "NodeError",
    "NotFound",
    "Conflict",
    "WorkerError",
    "OutputFile",
    "PeerClient",
    "PeerError",
    "PeerUnreachable",
    "Progress",
    "PromptLost",
    "PromptRejected",
    "QueueSettings",
    "QueueState",
    "QueueUnreachable",
    "ResultCache",
    "RoutingError",
    "ServerConfig",
    "ServerStatus",
    "Timeouts",
    "Timings",
    "TransportError",
    "WorkflowBuilder",
    "WorkflowError",
    "compress_url",
    "decompress_url",
    "load_config",
    "save_config",
    "view_url",
}


def test_exported_members() -> None:
    assert set(dispatch_core.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(dispatch_core, name).__module__.startswith("dispatch_core.")


def test_every_error_is_a_dispatch_error() -> None:
    errors = [getattr(dispatch_core, n) for n in PUBLIC if n.endswith(("Error", "Closed"))]
    errors += [dispatch_core.PromptRejected, dispatch_core.PromptLost, dispatch_core.Interrupted]
    errors += [dispatch_core.ExecutionFailed, dispatch_core.DispatchTimeout]
    for error in errors:
        if error is not dispatch_core.NodeError:
            assert issubclass(error, dispatch_core.DispatchError), error
    assert issubclass(dispatch_core.DispatchTimeout, TimeoutError)


def test_the_engine_never_imports_comfyui_or_torch() -> None:
    banned = {"server", "folder_paths", "comfy", "nodes", "execution", "torch", "numpy", "PIL"}
    root = Path(dispatch_core.__file__).parent
    for path in root.rglob("*.py"):
        name = path.relative_to(root).as_posix()
        allowed = {"PIL"} if name.startswith("bench/") else set()  # the baseline decodes with PIL
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & (banned - allowed), f"{name} imports {roots & banned}"
