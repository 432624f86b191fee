"""The service's metrics, in Prometheus's text format, through `prometheus-client`.

Fed by what the service already says: the `dispatch.job` events (every job's record, at
each change) give jobs by route, server, outcome and key, and the time each spent queued,
running on its peer and fetching its outputs; the dispatcher's counters and lanes, read at
scrape time, give queue depths, jobs in flight, model switches, resubmissions, failovers,
circuit states; the last status round gives each peer's latency. Nothing in the engine
calls this module.

Each service has its own CollectorRegistry, never the process-wide one: a process (or a
test run) may hold several services. `prometheus-client` is optional inside ComfyUI (not in
`requirements.txt`): without it `Metrics.create` answers None and the route says so.
"""

from __future__ import annotations

import collections
import importlib.util
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ..job import TERMINAL_STATES

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .._dispatcher import Dispatcher

__all__ = ["INSTALL_HINT", "Metrics", "available"]

INSTALL_HINT = (
    "metrics need the prometheus-client package: pip install prometheus-client "
    "(with the Python that runs this server), then restart it"
)
_PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, float("inf"))
_PHASES = ("queued", "running", "fetching")
"""Between accepted, started on the peer, over on the peer, outputs in hand."""
_WEBHOOK_ENDS = ("delivered", "failed", "refused")
_REMEMBER = 10_000
_COUNTS = {
    "submitted": "Prompts submitted to peers.",
    "completed": "Prompts that completed on peers.",
    "resubmitted": "Prompts submitted again after a peer forgot them.",
    "failed_over": "Jobs moved to another server of their pool after a failure.",
    "retried": "Jobs that backed off and tried again.",
    "attached": "Requests attached to a prompt already on a peer (journal).",
    "model_switches": "Jobs sent to a server holding other models than theirs.",
}


def available() -> bool:
    return importlib.util.find_spec("prometheus_client") is not None


class Metrics:
    """One service's metrics; `listen` is its `Events` listener, `exposition()` the page."""

    def __init__(
        self,
        dispatcher: Callable[[], Dispatcher | None],
        latency: Callable[[], dict[str, float]] = dict,
    ):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "dispatch_jobs",
            "Jobs ended, by route, server, outcome and API key.",
            ["route", "server", "outcome", "key"],
            registry=self.registry,
        )
        self.phases = Histogram(
            "dispatch_job_phase_seconds",
            "Seconds of a job: queued (until its peer starts it), running (until the peer "
            "says it is over), fetching (until its outputs are in hand).",
            ["phase", "route", "server", "key"],
            buckets=_PHASE_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "dispatch_webhook_deliveries",
            "Webhook deliveries ended, by outcome (delivered, failed, refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "dispatch_webhook_attempts",
            "Webhook POSTs made, retries included.",
            [],
            registry=self.registry,
        )
        self._seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        """Job id → what was last seen of it, for the last `_REMEMBER` jobs."""
        self.registry.register(_Live(dispatcher, latency))

    @classmethod
    def create(
        cls, dispatcher: Callable[[], Dispatcher | None], latency: Callable[[], dict[str, float]]
    ) -> Metrics | None:
        return cls(dispatcher, latency) if available() else None

    def exposition(self) -> tuple[bytes, str]:
        """The page and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def listen(self, event: str, data: dict[str, Any]) -> None:
        if event == "dispatch.job":
            self._job(data)

    def _job(self, data: dict[str, Any]) -> None:
        """Count each change once: a record is announced again when its webhook moves."""
        job_id, state = str(data["id"]), str(data["state"])
        webhook = data.get("webhook")
        webhook = webhook if isinstance(webhook, dict) else {}
        seen = _Seen(state, int(webhook.get("attempts") or 0), webhook.get("state"))
        before = self._seen.pop(job_id, _Seen("", 0, None))
        self._seen[job_id] = seen
        while len(self._seen) > _REMEMBER:
            self._seen.popitem(last=False)
        if state != before.state and state in TERMINAL_STATES:
            self._ended(data, state)
        if seen.attempts > before.attempts:
            self.webhook_attempts.inc(seen.attempts - before.attempts)
        if seen.webhook != before.webhook and seen.webhook in _WEBHOOK_ENDS:
            self.webhooks.labels(str(seen.webhook)).inc()

    def _ended(self, data: dict[str, Any], state: str) -> None:
        route, server = str(data.get("route") or ""), str(data.get("server") or "")
        key = str(data.get("key") or "")
        self.jobs.labels(route, server, state, key).inc()
        timings = data.get("timings") or {}
        instants = [timings.get(k) for k in ("queued", "started", "executed", "finished")]
        for phase, start, end in zip(_PHASES, instants, instants[1:], strict=False):
            if isinstance(start, (int, float)) and isinstance(end, (int, float)):
                self.phases.labels(phase, route, server, key).observe(max(end - start, 0.0))


class _Seen(NamedTuple):
    state: str
    attempts: int
    webhook: str | None


class _Live:
    """What is read at scrape time: the dispatcher's counters and lanes, peers' latency."""

    def __init__(
        self,
        dispatcher: Callable[[], Dispatcher | None],
        latency: Callable[[], dict[str, float]],
    ):
        self._dispatcher = dispatcher
        self._latency = latency

    def describe(self) -> list[Metric]:
        return []  # unchecked names: the families below are built afresh at each scrape

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        dispatcher = self._dispatcher()
        counts = dispatcher.counts if dispatcher is not None else {}
        for name, text in _COUNTS.items():
            yield CounterMetricFamily(f"dispatch_{name}", text, value=counts.get(name, 0))
        gauges = {
            "queue_depth": ("Jobs waiting here for a slot on the server.", "waiting"),
            "in_flight": ("Jobs on the server now (submitted, not yet ended).", "in_flight"),
            "peer_queue": ("Prompts in the peer's own queue that are not ours.", "external_queue"),
            "circuit_open": ("1 while the server's circuit breaker is open.", "tripped"),
            "consecutive_failures": ("Failures in a row seen on the server.", "failures"),
        }
        lanes = dispatcher.servers.lanes if dispatcher is not None else {}
        for name, (text, attribute) in gauges.items():
            family = GaugeMetricFamily(f"dispatch_{name}", text, labels=["server"])
            for server, lane in lanes.items():
                family.add_metric([server], float(getattr(lane, attribute)))
            yield family
        latency = GaugeMetricFamily(
            "dispatch_peer_latency_seconds",
            "The last status request's round trip.",
            labels=["server"],
        )
        for server, seconds in self._latency().items():
            latency.add_metric([server], seconds)
        yield latency
