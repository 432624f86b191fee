"""The one exception tree of dispatch_core, split by who failed.

    DispatchError                      base: everything this package raises
    ├── InputError                     the caller's input is wrong; fix it and retry
    │   ├── ConfigError                    a config key is wrong (names the key and the file)
    │   │   └── ConfigConflict                 the config changed since the caller read it
    │   ├── WorkflowError                  a workflow, override or builder call is wrong
    │   │   ├── TemplateError                  a saved template: bad name, unreadable
    │   │   └── GroupError                     a remote group cannot be cut out of its graph
    │   ├── RoutingError                   no server can take the job (none enabled, none able)
    │   ├── WorkerError                    a managed worker cannot be started as asked
    │   ├── NotFound                       the server, route, template, worker, job or file
    │   │                                  named does not exist (an HTTP 404)
    │   └── Conflict                       the name is taken, or the thing is in use (a 409)
    ├── PeerError                      the peer ComfyUI refused or failed the job
    │   ├── PromptRejected                 validation failed: the peer's `node_errors`
    │   ├── ExecutionFailed                a node raised while running: `execution_error`
    │   ├── Interrupted                    the prompt was interrupted on the peer
    │   └── PromptLost                     the peer forgot the prompt (it restarted)
    ├── TransportError                 the network or the peer's answers are broken
    │   ├── PeerUnreachable                connection refused, reset, DNS, TLS
    │   ├── BadResponse                    HTML, truncated JSON, 5xx, an answer of the wrong shape
    │   └── QueueUnreachable               the shared queue (Redis) cannot be reached: names its URL
    ├── DispatchTimeout                the job took longer than its timeout (also a TimeoutError)
    └── DispatcherClosed               we closed the dispatcher while the job waited

Every error carries `server` and `prompt_id` where they are known, and the peer's own
message, so that the text of `str(error)` is enough to act on; an InputError names the
`field` at fault, so that an HTTP answer can name it too.

Which errors are worth retrying is decided in one place, `_retry.is_transient`: the
TransportErrors and PromptLost (a restarted peer forgot the prompt: it is submitted again),
never the caller's errors nor a peer's refusal or failure of the prompt itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BadResponse",
    "ConfigConflict",
    "ConfigError",
    "Conflict",
    "DispatchError",
    "DispatchTimeout",
    "DispatcherClosed",
    "ExecutionFailed",
    "GroupError",
    "InputError",
    "Interrupted",
    "NodeError",
    "NotFound",
    "PeerError",
    "PeerUnreachable",
    "PromptLost",
    "PromptRejected",
    "QueueUnreachable",
    "RoutingError",
    "TemplateError",
    "TransportError",
    "WorkerError",
    "WorkflowError",
]


class DispatchError(Exception):
    """Base of every error raised by dispatch_core."""

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        prompt_id: str | None = None,
        field: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.server = server
        self.prompt_id = prompt_id
        self.field = field
        """The input at fault: a config key, a node, a request field."""

    def __str__(self) -> str:
        where = []
        if self.server:
            where.append(f"server {self.server!r}")
        if self.prompt_id:
            where.append(f"prompt {self.prompt_id}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class InputError(DispatchError):
    """The caller's input is wrong; nothing was sent that could have run."""


class NotFound(InputError):
    """The server, route, template, worker, job or file named does not exist."""


class Conflict(InputError):
    """The name is taken, or the thing is in use; `field` names it."""


class ConfigError(InputError):
    """A config value is wrong. `key` is a dotted path such as `servers.fast.url`."""

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None):
        prefix = ""
        if path:
            prefix += f"{path}: "
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message, field=key)
        self.key = key
        self.path = path


class ConfigConflict(ConfigError):
    """The config changed since the caller read it; `current_version` is the new one."""

    def __init__(self, message: str, *, current_version: str):
        super().__init__(message)
        self.current_version = current_version


class WorkflowError(InputError):
    """A workflow, an override or a builder call is wrong. `node` names the node at fault."""

    def __init__(self, message: str, *, node: str | None = None, server: str | None = None):
        super().__init__(message, server=server, field=node)
        self.node = node


class TemplateError(WorkflowError):
    """A saved template is misnamed or unreadable. `template` names it."""

    def __init__(self, message: str, *, template: str | None = None, node: str | None = None):
        super().__init__(message, node=node)
        self.template = template
        self.field = node or "name"


class GroupError(WorkflowError):
    """A remote group cannot be cut out of its graph, so nothing of the prompt may run.

    Refused before anything is queued: a link whose type cannot cross the group's edge, a
    node outside the group between two of its nodes, a node in two remote groups. `node` is
    the node to show the user (the one the refused link feeds); `group` is the group's key;
    the message holds one line per problem, each saying what to move.
    """

    def __init__(self, message: str, *, node: str | None = None, group: str | None = None) -> None:
        super().__init__(message, node=node)
        self.group = group
        self.problems: tuple[str, ...] = tuple(message.splitlines())


class RoutingError(InputError):
    """No server can take the job: none of its route is enabled, or able to run it."""


class WorkerError(InputError):
    """A managed worker cannot be started or stopped as asked. `field` names what to fix."""


class PeerError(DispatchError):
    """The peer ComfyUI refused or failed the job. Retrying the same prompt will fail again."""


@dataclass(frozen=True)
class NodeError:
    """One node's validation failure as the peer reported it in `node_errors`."""

    node_id: str
    class_type: str
    errors: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def describe(self) -> str:
        parts = []
        for error in self.errors:
            text = str(error.get("message", "error"))
            details = error.get("details")
            if details:
                text += f": {details}"
            parts.append(text)
        return f"node {self.node_id} ({self.class_type}): " + "; ".join(parts or ["invalid"])


class PromptRejected(PeerError):
    """The peer refused the prompt at validation (`POST /prompt` 400, or 200 with node_errors)."""

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        prompt_id: str | None = None,
        error_type: str | None = None,
        node_errors: tuple[NodeError, ...] = (),
    ):
        lines = [message] + [f"  {error.describe()}" for error in node_errors]
        super().__init__("\n".join(lines), server=server, prompt_id=prompt_id)
        self.error_type = error_type
        self.node_errors = node_errors


class ExecutionFailed(PeerError):
    """A node raised while the peer ran the prompt (`execution_error`)."""

    def __init__(
        self,
        *,
        server: str | None,
        prompt_id: str | None,
        node_id: str | None,
        node_type: str | None,
        exception_type: str,
        exception_message: str,
        traceback: tuple[str, ...] = (),
    ):
        text = (
            f"node {node_id} ({node_type}) failed on the peer: "
            f"{exception_type}: {exception_message.strip()}"
        )
        super().__init__(text, server=server, prompt_id=prompt_id)
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = traceback


class Interrupted(PeerError):
    """The prompt was interrupted on the peer, by us or by someone else."""

    def __init__(
        self,
        message: str = "the prompt was interrupted on the peer",
        *,
        server: str | None = None,
        prompt_id: str | None = None,
        node_id: str | None = None,
    ):
        super().__init__(message, server=server, prompt_id=prompt_id)
        self.node_id = node_id


class PromptLost(PeerError):
    """The peer has the prompt in neither its queue nor its history: it restarted."""


class TransportError(DispatchError):
    """The network failed, or the peer answered something that is not ComfyUI's protocol."""


class PeerUnreachable(TransportError):
    """The peer could not be reached (refused, reset, DNS, TLS)."""


class BadResponse(TransportError):
    """The peer answered with an unexpected status or body."""

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        prompt_id: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message, server=server, prompt_id=prompt_id)
        self.status = status


class QueueUnreachable(TransportError):
    """The shared queue (`queue.url`) did not answer: a new job is refused at once, never
    left waiting; `url` names it."""

    def __init__(self, message: str, *, url: str):
        super().__init__(message, field="queue.url")
        self.url = url


class DispatchTimeout(DispatchError, TimeoutError):
    """The job did not finish within its timeout; `waited_for` says what it was waiting on."""

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        prompt_id: str | None = None,
        waited_for: str = "",
    ):
        super().__init__(message, server=server, prompt_id=prompt_id)
        self.waited_for = waited_for


class DispatcherClosed(DispatchError):
    """The dispatcher was closed while this job was waiting or running."""
