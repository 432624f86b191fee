"""DispatchService: what the node, the `/dispatch/*` routes and the panel share.

It owns one folder (`config.json`, `templates/`, `journal.sqlite`, `jobs.sqlite`, the
workers' state), the dispatcher built from that config, and the parts that keep each
kind of state: the config store, the templates, the jobs, the monitor of the servers and
the fleet of managed workers. It is the one door for `http/` and `nodes/`: they call its
methods and never reach into its parts. Changes are announced through `notify(event,
data)`: in ComfyUI that is `PromptServer.send_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._dispatcher import Dispatcher
from .._files import remove_stale_temp_files
from .._journal import Journal
from ..config import Config
from ..templates import TemplateStore
from . import _config_edits as edits
from ._activity import Activity, JobRecord
from ._config_store import ConfigStore, Edit
from ._fleet import Fleet
from ._job_log import JobLog
from ._job_table import JobTable
from ._jobs import Jobs
from ._keys import ApiKeys
from ._metrics import Metrics
from ._monitor import Monitor
from ._support import Background, Events, Notify, StateFile
from ._templates import Templates
from ._webhooks import Webhooks
from ._workers import WorkerManager

__all__ = ["DispatchService"]

_log = logging.getLogger("dispatch_core.service")


class DispatchService:
    """Use as `async with DispatchService(folder)`, or call `ready()` from the loop it
    should live on (ComfyUI's server loop) and `close()` at shutdown."""

    edits = edits
    """The named config edits (`add_server`, `put_route`…) to pass to `edit_config`."""

    def __init__(
        self,
        folder: str | Path,
        *,
        config_path: str | Path | None = None,
        notify: Notify | None = None,
        status_interval: float = 5.0,
        journal: bool = True,
        comfyui: str | Path | None = None,
        comfyui_args: Sequence[str] = (),
        worker_command: Sequence[str] | None = None,
        metrics: bool = True,
        webhooks_internal: bool | None = None,
    ):
        self.folder = Path(folder)
        self.config_path = Path(config_path) if config_path else self.folder / "config.json"
        self.status_interval = status_interval
        self._events = Events(notify)
        self._background = Background()
        self._use_journal = journal
        self._journal: Journal | None = None
        self._dispatcher: Dispatcher | None = None
        self._starting: asyncio.Lock | None = None
        self._watch: asyncio.Task[None] | None = None
        self._remove_stale_temp_files()
        self._store = ConfigStore(self.config_path)
        self.templates = Templates(TemplateStore(self.folder / "templates"), self._events)
        activity = self._activity()
        if webhooks_internal is None:
            webhooks_internal = os.environ.get("DISPATCH_WEBHOOKS_INTERNAL", "") == "1"
        self.webhooks = Webhooks(
            self.folder, self._config, activity, self._background, allow_internal=webhooks_internal
        )
        self.jobs = Jobs(self.ready, self._config, self.templates, activity, self.webhooks.target)
        calibrations = StateFile(self.folder / "calibration.json")
        self.monitor = Monitor(self.ready, self._config, self._events, calibrations)
        self.keys: ApiKeys | None = None
        """The gateway's named API keys (`keys.json`); None inside ComfyUI."""
        self.metrics = (
            Metrics.create(lambda: self._dispatcher, self.monitor.latencies) if metrics else None
        )
        """Prometheus metrics, or None without prometheus-client (or with `metrics=False`)."""
        if self.metrics is not None:
            self._events.listen(self.metrics.listen)
        self._events.listen(JobLog().listen)
        self._events.listen(self.webhooks.listen)
        self.fleet = Fleet(
            WorkerManager(
                self.folder / "workers",
                comfyui=comfyui,
                comfyui_args=comfyui_args,
                command=worker_command,
            ),
            StateFile(self.folder / "workers.json"),
            config=self._config,
            edit_config=self.edit_config,
            announce=self.monitor.announce,
            background=self._background,
        )

    def _activity(self) -> Activity:
        """Job records on disk here, or, with a shared queue, in the queue (all processes')."""
        if self._store.config.queue.backend != "local":
            return Activity(listener=self._job_changed, shared=True)
        return Activity(listener=self._job_changed, table=JobTable(self.folder / "jobs.sqlite"))

    # -- life -----------------------------------------------------------------------------

    async def __aenter__(self) -> DispatchService:
        await self.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ready(self) -> Dispatcher:
        """The dispatcher, started on first use on the running loop."""
        if self._dispatcher is not None:
            return self._dispatcher
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._dispatcher is None:
                self._dispatcher = await self._start_dispatcher()
                self.webhooks.resume_all()  # deliveries a previous process left unsent
                if self.status_interval > 0:
                    watch = self.monitor.watch(self.status_interval)
                    self._watch = asyncio.create_task(watch, name="dispatch-status")
        return self._dispatcher

    async def _start_dispatcher(self) -> Dispatcher:
        if self._use_journal and not self.jobs.activity.shared:  # a shared queue journals
            self._journal = Journal(self.folder / "journal.sqlite")
            await self._journal.__aenter__()
        dispatcher = Dispatcher(self.config, journal=self._journal)
        await dispatcher.__aenter__()
        await self._join_queue(dispatcher)
        for server, seconds in self.monitor.calibrations().items():
            dispatcher.set_calibration(server, seconds)
        return dispatcher

    async def _join_queue(self, dispatcher: Dispatcher) -> None:
        """With a shared queue: its records in this process's job list, and its changes."""
        shared = dispatcher.coordination
        if shared is None or not self.jobs.activity.shared:
            return
        shared.on_record = self.jobs.activity.apply
        for data in await shared.recent(200):
            self.jobs.activity.apply(data)

    def queue_view(self) -> dict[str, Any]:
        """The queue backend in use and, when shared, the processes sharing it."""
        shared = self._dispatcher.coordination if self._dispatcher is not None else None
        if shared is None:
            return {"backend": self.config.queue.backend, "processes": []}
        return shared.describe()

    async def close(self) -> None:
        await self.fleet.manager.close()
        await self._background.close()
        await self.webhooks.close()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._dispatcher is not None:
            await self._dispatcher.close()
            self._dispatcher = None
        if self._journal is not None:
            await self._journal.close()
            self._journal = None
        self.jobs.activity.close()

    @property
    def notify(self) -> Notify | None:
        return self._events.notify

    @notify.setter
    def notify(self, notify: Notify | None) -> None:
        self._events.notify = notify

    # -- config ---------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._store.config

    @property
    def config_error(self) -> str | None:
        return self._store.error

    @property
    def config_version(self) -> str:
        return self._store.version

    def _config(self) -> Config:
        return self._store.config

    def config_view(self) -> dict[str, Any]:
        """The config with every header value masked, its version and any load error."""
        return self._store.view()

    async def edit_config(
        self, change: Edit, *, expected_version: str | None = None
    ) -> dict[str, Any]:
        """Apply `change` (one of `edits`), check it whole, save it, use it, announce it.

        With `expected_version`, a config changed meanwhile (another tab) is refused with
        ConfigConflict instead of being overwritten.
        """
        config = await self._store.edit(change, expected_version=expected_version)
        if self._dispatcher is not None:
            await self._dispatcher.reconfigure(config)
        view = self._store.view()
        self._events.emit("dispatch.config", view)
        return view

    # -- jobs, templates, servers and workers: each part is the door to its own ---------------

    def _job_changed(self, record: JobRecord) -> None:
        self._events.emit("dispatch.job", record.to_dict())

    def _remove_stale_temp_files(self) -> None:
        """A process killed mid-write leaves its temp file: of the config, with its tokens."""
        ours = {self.config_path.name, "workers.json", "calibration.json"}
        removed = remove_stale_temp_files(self.folder, ours)
        removed += remove_stale_temp_files(self.config_path.parent, {self.config_path.name})
        removed += remove_stale_temp_files(self.folder / "templates")
        for path in removed:
            _log.info("ComfyUI-Dispatch: removed %s, left by an interrupted write", path)
