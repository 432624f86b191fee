"""DispatchService: what the node, the `/dispatch/*` routes and the panel share.

It owns one folder (`config.json`, `templates/`, `journal.sqlite`), the dispatcher built
from that config, the recent jobs, and a watch on every server's status. Changes are
announced through `notify(event, data)`: in ComfyUI that is `PromptServer.send_sync`.

A config file that cannot be read is renamed with a `.bad` suffix and reported in
`config_error`; the service then starts with no servers rather than refusing to start, and
nothing is written until the user saves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from ._files import remove_stale_temp_files, write_atomically
from ._job_table import JobTable
from ._json import JSONLimitError, loads_bounded
from ._serve_file import Download
from ._watch import ProgressCallback
from .activity import Activity, JobRecord
from .config import AUTO, Config
from .dispatcher import Dispatcher, ServerStatus
from .errors import ConfigConflict, ConfigError, DispatchError, RoutingError
from .journal import Journal
from .result import DispatchResult, Progress
from .templates import Template, TemplateStore, suggest_parameters
from .workers import WorkerError, WorkerManager, WorkerSpec, check_name
from .workflow import WorkflowBuilder

__all__ = ["MASK", "DispatchService", "fan_out_seeds"]

MASK = "********"
"""Shown instead of every header value; sent back unchanged, it keeps the stored value."""

Notify = Callable[[str, dict[str, Any]], None]
_log = logging.getLogger(__name__)


class DispatchService:
    """Use as `async with DispatchService(folder)`, or call `ready()` from the loop it
    should live on (ComfyUI's server loop) and `close()` at shutdown."""

    def __init__(
        self,
        folder: str | Path,
        *,
        config_path: str | Path | None = None,
        notify: Notify | None = None,
        status_interval: float = 5.0,
        journal: bool = True,
        comfyui: str | Path | None = None,
        worker_command: Sequence[str] | None = None,
    ):
        self.folder = Path(folder)
        self.config_path = Path(config_path) if config_path else self.folder / "config.json"
        self.templates = TemplateStore(self.folder / "templates")
        self.activity = Activity(
            listener=self._job_changed, table=JobTable(self.folder / "jobs.sqlite")
        )
        self.notify = notify
        self.status_interval = status_interval
        self.config = Config()
        self.config_error: str | None = None
        """Why the config file could not be used, and where it was kept."""
        self.config_version = ""
        self._use_journal = journal
        self._journal: Journal | None = None
        self._dispatcher: Dispatcher | None = None
        self._starting: asyncio.Lock | None = None
        self._editing = asyncio.Lock()
        self._monitor: asyncio.Task[None] | None = None
        self._status: dict[str, ServerStatus] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.comfyui = str(comfyui) if comfyui else ""
        """The ComfyUI folder every worker runs (inside ComfyUI: its own): the operator's."""
        self.workers = WorkerManager(
            self.folder / "workers", comfyui=comfyui, command=worker_command
        )
        self._remove_stale_temp_files()
        self._read_config()

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
                if self._use_journal:
                    self._journal = Journal(self.folder / "journal.sqlite")
                    await self._journal.__aenter__()
                dispatcher = Dispatcher(self.config, journal=self._journal)
                await dispatcher.__aenter__()
                for server, seconds in self._calibrations().items():
                    dispatcher.set_calibration(server, seconds)
                self._dispatcher = dispatcher
                if self.status_interval > 0:
                    watch = self._watch_status()
                    self._monitor = asyncio.create_task(watch, name="dispatch-status")
        return self._dispatcher

    async def close(self) -> None:
        await self.workers.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        if self._dispatcher is not None:
            await self._dispatcher.close()
            self._dispatcher = None
        if self._journal is not None:
            await self._journal.close()
            self._journal = None
        self.activity.close()

    def _remove_stale_temp_files(self) -> None:
        """A process killed mid-write leaves its temp file: of the config, with its tokens."""
        ours = {self.config_path.name, "workers.json", "calibration.json"}
        removed = remove_stale_temp_files(self.folder, ours)
        removed += remove_stale_temp_files(self.config_path.parent, {self.config_path.name})
        removed += remove_stale_temp_files(self.templates.folder)
        for path in removed:
            _log.info("ComfyUI-Dispatch: removed %s, left by an interrupted write", path)

    # -- config -------------------------------------------------------------------------

    def config_view(self) -> dict[str, Any]:
        """The config with every header value masked, its version and any load error."""
        data = self.config.to_dict()
        for server in data["servers"].values():
            server["headers"] = dict.fromkeys(server["headers"], MASK)
        return {
            "config": data,
            "version": self.config_version,
            "error": self.config_error,
            "warnings": _route_warnings(self.config),
            "path": str(self.config_path),
        }

    async def edit_config(
        self,
        change: Callable[[dict[str, Any]], None],
        *,
        expected_version: str | None = None,
    ) -> dict[str, Any]:
        """Apply `change` to the config's dict, check it, save it, and use it.

        With `expected_version`, a config changed meanwhile (another tab) is refused with
        ConfigConflict instead of being overwritten.
        """
        async with self._editing:
            if expected_version is not None and expected_version != self.config_version:
                raise ConfigConflict(
                    "the config changed since you loaded it (another tab or a file edit); "
                    "reload it and apply your change again",
                    current_version=self.config_version,
                )
            data = self.config.to_dict()
            change(data)
            self._unmask(data)
            config = Config.from_dict(data)
            text = (json.dumps(config.to_dict(), indent=2) + "\n").encode()
            await asyncio.to_thread(write_atomically, self.config_path, text)
            self.config, self.config_error = config, None
            self.config_version = _version(text)
            if self._dispatcher is not None:
                await self._dispatcher.reconfigure(config)
            view = self.config_view()
        self._emit("dispatch.config", view)
        return view

    def _unmask(self, data: dict[str, Any]) -> None:
        servers = data.get("servers")
        if not isinstance(servers, dict):
            return  # the config's own check names the mistake
        for name, server in servers.items():
            headers = server.get("headers") if isinstance(server, dict) else None
            if not isinstance(headers, dict):
                continue
            stored = self.config.servers.get(name)
            moved = stored is not None and server.get("url") != stored.url
            for header, value in headers.items():
                if value != MASK:
                    continue
                key = f"servers.{name}.headers.{header}"
                if moved:  # the value was meant for the old host, not for the new one
                    raise ConfigError("the URL changed: send the header's value again", key=key)
                if stored is None or header not in stored.headers:
                    raise ConfigError("send the header's value, not the mask", key=key)
                headers[header] = stored.headers[header]

    def _read_config(self) -> None:
        try:
            raw = self.config_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as error:
            self.config_error = f"{self.config_path}: cannot read: {error.strerror}"
            return
        try:
            self.config = Config.from_dict(loads_bounded(raw), path=str(self.config_path))
            self.config_version = _version(raw)
            return
        except JSONLimitError as error:
            problem = f"{self.config_path}: {error}"
        except ConfigError as error:
            problem = str(error)
        kept = self.config_path.with_name(self.config_path.name + ".bad")
        if kept.exists():
            kept = self.config_path.with_name(f"{self.config_path.name}.{int(time.time())}.bad")
        self.config_path.rename(kept)
        self.config_error = (
            f"{problem}. The file was kept as {kept.name}; no server is configured until "
            "you fix that file and rename it back, or save a new config"
        )
        _log.error("ComfyUI-Dispatch: %s", self.config_error)

    # -- jobs ---------------------------------------------------------------------------

    async def run(
        self,
        route: str,
        *,
        template: str | Template | None = None,
        workflow: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        server: str | None = None,
        timeout: float | None = None,
        output_node: str | None = None,
        on_progress: ProgressCallback | None = None,
        record: JobRecord | None = None,
    ) -> DispatchResult:
        """Run a saved template (or a workflow) with `values` set, and record the job."""
        try:
            dispatcher = await self.ready()
            chosen = self.load_template(template, workflow)
            builder = chosen.builder(values)
            _check_output_node(builder, output_node)
        except BaseException as error:
            if record is not None:
                self.activity.failed(record, error)
            raise
        if record is None:
            record = self.activity.start(chosen.name, route, server)

        async def progress(report: Progress) -> None:
            self.activity.running(record, report.server, report.prompt_id)
            if on_progress is not None:
                answer = on_progress(report)
                if inspect.isawaitable(answer):
                    await answer

        try:
            result = await dispatcher.run(
                route,
                builder,
                server=server,
                timeout=timeout,
                output_node=output_node,
                on_progress=progress,
            )
        except BaseException as error:
            self.activity.failed(record, error)
            raise
        self.activity.finished(record, result)
        return result

    def submit(self, route: str, **job: Any) -> JobRecord:
        """Start `run(route, **job)` in the background; its record tells how it goes.

        For callers that poll (`POST /dispatch/run`): the result stays reachable through
        the record's files while the job is among the recent ones.
        """
        chosen = self.load_template(job.get("template"), job.get("workflow"))
        builder = chosen.builder(job.get("values"))  # bad values are refused now, not later
        _check_output_node(builder, job.get("output_node"))
        record = self.activity.start(chosen.name, route, job.get("server"))

        async def background() -> None:
            with contextlib.suppress(Exception):  # the record holds the error
                await self.run(route, record=record, **(job | {"template": chosen}))

        self._in_background(background(), f"dispatch-{record.id}")
        return record

    async def fan_out(
        self,
        servers: Sequence[str],
        *,
        template: str | Template | None = None,
        workflow: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        seed: int | None = None,
        partial: bool = False,
        timeout: float | None = None,
        output_node: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[DispatchResult | DispatchError]:
        """The same job on every server at once, server *i* with `seed + i`; results in
        server order. Without `partial`, the first failure cancels the others and is raised.
        """
        if not servers:
            raise RoutingError("fan-out needs at least one server")
        chosen = self.load_template(template, workflow)
        if seed is not None and "seed" not in chosen.parameters:
            raise RoutingError(
                f"template {chosen.name!r} has no 'seed' parameter to vary per server; "
                "add one (NODE.INPUT of the sampler's seed) or leave the seed out"
            )
        seeds = fan_out_seeds(seed, servers)
        jobs = [
            {
                "template": chosen,
                "values": dict(values or {}) | ({"seed": seeds[server]} if seeds else {}),
                "server": server,
                "timeout": timeout,
                "output_node": output_node,
                "on_progress": on_progress,
            }
            for server in servers
        ]
        return await self.run_many("fan-out", jobs, partial=partial)

    async def run_many(
        self, route: str, jobs: Sequence[Mapping[str, Any]], *, partial: bool = False
    ) -> list[DispatchResult | DispatchError]:
        """Run jobs at once (each the keyword arguments of `run`); results in order.

        Without `partial`, the first failure cancels the others and is raised; with it, a
        job's DispatchError takes its place in the list.
        """
        runs = [self.run(route, **job) for job in jobs]
        if partial:
            found = await asyncio.gather(*runs, return_exceptions=True)
            for item in found:
                if not isinstance(item, (DispatchResult, DispatchError)):
                    raise item  # not a peer's failure: a bug or a cancellation
            return [item for item in found if isinstance(item, (DispatchResult, DispatchError))]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run) for run in runs]
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]

    def load_template(
        self, template: str | Template | None, workflow: Mapping[str, Any] | None = None
    ) -> Template:
        """A template by name (read from the folder), as given, or made of a bare workflow."""
        if isinstance(template, Template):
            return template
        if template is not None:
            return self.templates.load(template)
        if workflow is None:
            raise RoutingError("name a template or send a workflow")
        return Template("workflow", workflow, suggest_parameters(workflow))

    async def open_file(
        self, job_id: str, index: int
    ) -> tuple[AbstractAsyncContextManager[Download], str]:
        """An output file of a job, to stream from the server that made it, and its name.

        Only that server is asked, under the name it gave: the file is that server's own.
        """
        record = self.activity.get(job_id)
        if record is None or not 0 <= index < len(record.files):
            raise RoutingError(f"no file {index} of job {job_id[:100]!r}", missing=True)
        output = record.files[index]
        if output.server not in self.config.servers:
            raise RoutingError(
                f"server {output.server!r}, which made this file, is no longer configured",
                missing=True,
            )
        peer = (await self.ready()).peer(output.server)
        return peer.open_view(output.filename, output.subfolder, output.type), output.filename

    def notify_templates(self) -> None:
        """Tell the panels that templates were saved, renamed or deleted."""
        self._emit("dispatch.templates", {"templates": self.templates.list()})

    def _job_changed(self, record: JobRecord) -> None:
        self._emit("dispatch.job", record.to_dict())

    # -- servers ------------------------------------------------------------------------

    async def status(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        dispatcher = await self.ready()
        if refresh or set(self._status) != set(self.config.servers):
            self._status = await dispatcher.status()
        return [dataclasses.asdict(s) for s in self._status.values()]

    async def test_server(self, name: str) -> dict[str, Any]:
        dispatcher = await self.ready()
        found = await dispatcher.server_status(name)
        self._status[name] = found
        return dataclasses.asdict(found)

    async def inventory(self, *, refresh: bool = False) -> dict[str, Any]:
        """Each server's node class count and model lists (read again with `refresh`)."""
        dispatcher = await self.ready()
        if refresh or set(dispatcher.inventories) != set(self.config.servers):
            await dispatcher.refresh_inventory()
        return {
            name: inventory.to_dict()
            for name, inventory in dispatcher.inventories.items()
            if name in self.config.servers
        }

    async def calibrate(self, name: str, runs: int = 3) -> float:
        """Time the calibration workflow on a server; kept in `calibration.json`."""
        dispatcher = await self.ready()
        seconds = await dispatcher.calibrate(name, runs=runs)
        saved = self._calibrations()
        saved[name] = round(seconds, 4)
        await self._save_json("calibration.json", saved)
        await self._announce(name)
        return seconds

    def _calibrations(self) -> dict[str, float]:
        saved = self._load_json("calibration.json")
        return {k: float(v) for k, v in saved.items() if isinstance(v, (int, float))}

    # -- managed workers ------------------------------------------------------------------

    def worker_list(self) -> list[dict[str, Any]]:
        """Every saved worker, with its process state when started."""
        listing = []
        for name, spec in self._worker_specs().items():
            started = self.workers.workers.get(name)
            state = started.to_dict() if started else {"name": name, **spec, "state": "stopped"}
            listing.append(state)
        return listing

    async def start_worker(
        self, name: str, spec: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Start a worker (a new one from `spec`, or a saved one) and make it a server.

        `spec` takes `port`, `gpu` and `args` only: the ComfyUI folder is the operator's.
        """
        name = check_name(name)
        saved = self._worker_specs()
        if spec is None:
            if name not in saved:
                raise WorkerError(
                    f"no saved worker {name!r}: give its port and GPU", field="name", missing=True
                )
            spec = saved[name]
        checked = WorkerSpec.from_dict(name, dict(spec))
        server = self.config.servers.get(name)
        url = f"http://127.0.0.1:{checked.port}"
        if server is not None and server.url != url:
            raise WorkerError(
                f"a server named {name!r} exists with another URL ({server.url})", field="name"
            )
        worker = await self.workers.start(checked)
        saved[name] = checked.to_dict()
        await self._save_worker_specs(saved)

        def add(config: dict[str, Any]) -> None:
            entry = config["servers"].setdefault(name, {"url": url})
            entry["enabled"] = True

        await self.edit_config(add)

        async def announce() -> None:
            with contextlib.suppress(DispatchError):
                await self.workers.wait_ready(name)
            await self._announce(name)

        self._in_background(announce(), f"worker-ready-{name}")
        return worker.to_dict()

    async def stop_worker(self, name: str, *, forget: bool = False) -> None:
        """Stop a worker and disable its server; with `forget`, drop its saved spec too."""
        name = check_name(name)
        if name in self.workers.workers:
            await self.workers.stop(name)
            if forget:
                self.workers.forget(name)
        elif name not in self._worker_specs():
            raise WorkerError(f"no worker {name!r}", field="name", missing=True)
        if forget:
            saved = self._worker_specs()
            saved.pop(name, None)
            await self._save_worker_specs(saved)
        if name in self.config.servers:

            def disable(config: dict[str, Any]) -> None:
                config["servers"][name]["enabled"] = False

            await self.edit_config(disable)

    def worker_log(self, name: str, lines: int = 200) -> str:
        """The end of the log of a worker this service knows (saved or started)."""
        name = check_name(name)
        if name not in self.workers.workers and name not in self._worker_specs():
            raise WorkerError(f"no worker {name!r}", field="name", missing=True)
        return self.workers.log(name, lines)

    def _worker_specs(self) -> dict[str, dict[str, Any]]:
        """Saved specs. A `comfyui` saved by older versions is dropped: it is the operator's."""
        return {
            k: {key: value for key, value in v.items() if key != "comfyui"}
            for k, v in self._load_json("workers.json").items()
            if isinstance(v, dict)
        }

    async def _save_worker_specs(self, specs: Mapping[str, Any]) -> None:
        await self._save_json("workers.json", specs)

    def _load_json(self, name: str) -> dict[str, Any]:
        """A small state file of the folder; missing or unreadable, it counts as empty."""
        try:
            saved = json.loads((self.folder / name).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in saved.items()} if isinstance(saved, dict) else {}

    async def _save_json(self, name: str, data: Mapping[str, Any]) -> None:
        text = (json.dumps(data, indent=2) + "\n").encode()
        await asyncio.to_thread(write_atomically, self.folder / name, text)

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` beside the caller; cancelled when the service closes."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def free(self, name: str) -> None:
        """Ask the server to unload its models and free VRAM (`POST /free`)."""
        dispatcher = await self.ready()
        await dispatcher.peer(name).free()

    async def _announce(self, name: str) -> None:
        """Ask one server now and tell the panels, rather than wait for the next watch."""
        await self.test_server(name)
        self._emit("dispatch.status", {"servers": await self.status()})

    async def _watch_status(self) -> None:
        seen: list[dict[str, Any]] | None = None
        while True:
            try:
                now = await self.status(refresh=True)
                await self._refresh_old_inventories()
            except Exception:  # never let the watch die: the next round may work
                _log.exception("ComfyUI-Dispatch: status check failed")
            else:
                changed = [_without_latency(s) for s in now]  # latency jitters every round
                if changed != seen:
                    self._emit("dispatch.status", {"servers": now})
                    seen = changed
            await asyncio.sleep(self.status_interval)

    async def _refresh_old_inventories(self) -> None:
        dispatcher = await self.ready()
        old = [
            name
            for name, inventory in dispatcher.inventories.items()
            if time.time() - inventory.fetched_at > dispatcher.inventory_max_age
        ]
        for name in old:
            await dispatcher.refresh_inventory(name)

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        if self.notify is not None:
            try:
                self.notify(event, data)
            except Exception:
                _log.exception("ComfyUI-Dispatch: could not send %s", event)


def fan_out_seeds(seed: int | None, servers: Sequence[str]) -> dict[str, int]:
    """Server *i* of a fan-out gets `seed + i`, wrapped at 2^64 as ComfyUI's seeds are."""
    if seed is None:
        return {}
    return {server: (seed + index) % 2**64 for index, server in enumerate(servers)}


def _route_warnings(config: Config) -> list[str]:
    """Routes that can send no job anywhere, or only to some of their servers."""
    warnings = []
    for route, names in config.routes.items():
        if names == (AUTO,):
            if config.servers and not any(s.enabled for s in config.servers.values()):
                warnings.append(f"route {route!r}: every server is disabled")
            continue
        disabled = [n for n in names if not config.servers[n].enabled]
        if disabled and len(disabled) == len(names):
            warnings.append(f"route {route!r}: every server is disabled ({', '.join(disabled)})")
        elif disabled:
            warnings.append(f"route {route!r}: server {', '.join(disabled)} is disabled")
    return warnings


def _check_output_node(builder: WorkflowBuilder, output_node: str | None) -> None:
    """A named output node must exist, so a typo is refused before anything runs."""
    if output_node is not None:
        builder.resolve(output_node)


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _without_latency(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "latency_ms"}
