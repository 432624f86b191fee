"""dispatch_core: send ComfyUI workflows to the right server, keep every GPU busy.

A pure asyncio library: no ComfyUI, no torch. The Remote Dispatch node and the
`/dispatch/*` routes stand on it, and it works on its own from Python or a shell.

    async with Dispatcher(load_config("dispatch.json")) as dispatcher:
        result = await dispatcher.run("generate", workflow, {"6": {"text": "a red jacket"}})
        png = await result.images[0].read()
"""

from ._cache import ResultCache
from ._dispatcher import Dispatcher, ServerStatus
from ._journal import Journal
from ._peer import PeerClient, QueueState
from ._urls import compress_url, decompress_url, view_url
from .config import (
    CacheSettings,
    Config,
    QueueSettings,
    ServerConfig,
    Timeouts,
    load_config,
    save_config,
)
from .errors import (
    BadResponse,
    ConfigConflict,
    ConfigError,
    Conflict,
    DispatcherClosed,
    DispatchError,
    DispatchTimeout,
    ExecutionFailed,
    GroupError,
    InputError,
    Interrupted,
    NodeError,
    NotFound,
    PeerError,
    PeerUnreachable,
    PromptLost,
    PromptRejected,
    QueueUnreachable,
    RoutingError,
    TemplateError,
    TransportError,
    WorkerError,
    WorkflowError,
)
from .job import JobHandle, JobSpec, JobState
from .result import DispatchResult, OutputFile, Progress, Timings
from .service import DispatchService, JobRecord
from .templates import Template, TemplateStore
from .workflow import WorkflowBuilder

__version__ = "0.1.0"

__all__ = [
    "BadResponse",
    "CacheSettings",
    "Config",
    "ConfigConflict",
    "ConfigError",
    "Conflict",
    "DispatchError",
    "DispatchResult",
    "DispatchService",
    "DispatchTimeout",
    "Dispatcher",
    "DispatcherClosed",
    "ExecutionFailed",
    "GroupError",
    "InputError",
    "Interrupted",
    "JobHandle",
    "JobRecord",
    "JobSpec",
    "JobState",
    "Journal",
    "NodeError",
    "NotFound",
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
    "Template",
    "TemplateError",
    "TemplateStore",
    "Timeouts",
    "Timings",
    "TransportError",
    "WorkerError",
    "WorkflowBuilder",
    "WorkflowError",
    "compress_url",
    "decompress_url",
    "load_config",
    "save_config",
    "view_url",
]
