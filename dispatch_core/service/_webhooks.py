"""Webhooks: a job's outcome POSTed to a URL when the job ends, signed, retried, recorded.

The URL is the job's own (`JobSpec.webhook`, `"webhook"` in `POST /dispatch/run`), else its
route's (`webhooks.routes` in the config), else the config's `webhooks.url`. The body is
the job's record as `GET /dispatch/jobs/{id}` answers it, signed with HMAC-SHA256 under the
service's secret:

    X-Dispatch-Signature: sha256=<hex of HMAC-SHA256(secret, body)>
    X-Dispatch-Delivery: <job id>          (the same on every retry: receivers dedupe on it)

The secret is `DISPATCH_WEBHOOK_SECRET`, else `webhook_secret` in the service's folder
(owner-only, made on first use). A delivery is retried, with a jittered exponential
back-off, on a 5xx, a 408 or 429, or a connection that fails, until `webhooks.retry_for`
seconds after the job ended; any other answer ends it. Each attempt is written into the
job's record (state, attempts, last status) before it is announced, so the panel, the
metrics and the logs see it; a delivery cut short by a restart is sent again on the next
start, under the same delivery id. Receivers may reach only public addresses unless the
operator allows internal ones (see `_outbound`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .._files import write_atomically
from .._outbound import InternalAddress, OutboundResolver, RefusedName, refuse_internal_literal
from ..config import Config, check_webhook_url
from ..errors import InputError
from ._activity import Activity, JobRecord
from ._support import Background

__all__ = ["SIGNATURE_HEADER", "Webhooks", "sign"]

SIGNATURE_HEADER = "X-Dispatch-Signature"
_ATTEMPT_TIMEOUT = 10.0
_MAX_BACKOFF = 60.0
_RETRIED = {408, 429}
_OPEN = ("pending", "sending")


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: what a receiver computes to check a delivery."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhooks:
    """Sends each ended job's webhook once, in a task owned by the service's Background."""

    def __init__(
        self,
        folder: Path,
        config: Callable[[], Config],
        activity: Activity,
        background: Background,
        *,
        allow_internal: bool = False,
    ):
        self._folder = folder
        self._config = config
        self._activity = activity
        self._background = background
        self.allow_internal = allow_internal
        self.first_retry = 1.0
        """Seconds before the first retry; each next one waits twice as long, at most 60."""
        self._session: aiohttp.ClientSession | None = None
        self._sending: set[str] = set()

    def target(self, route: str, own: str | None) -> dict[str, Any] | None:
        """The record's `webhook` for a new job: its URL, nothing sent yet."""
        url = own or self._config().webhooks.for_route(route)
        if url is None:
            return None
        if own is not None:
            try:
                own = url = check_webhook_url(own)
            except ValueError as bad:
                raise InputError(str(bad), field="webhook") from None
            host = urlsplit(own).hostname or ""
            refuse_internal_literal(host, field="webhook", allow_internal=self.allow_internal)
        return {"url": url, "state": "pending", "attempts": 0, "status": None, "error": None}

    def listen(self, event: str, data: dict[str, Any]) -> None:
        """An `Events` listener: a job that has ended with a delivery still open is sent."""
        if event == "dispatch.job" and data.get("state") in ("done", "failed", "cancelled"):
            record = self._activity.get(str(data["id"]))
            if record is not None:
                self.resume(record)

    def resume(self, record: JobRecord) -> None:
        """Start the record's delivery, unless it has none open or one is under way."""
        hook = record.webhook
        if hook is None or hook.get("state") not in _OPEN or record.id in self._sending:
            return
        self._sending.add(record.id)
        self._background.start(self._deliver(record), name=f"webhook:{record.id}")

    def resume_all(self) -> None:
        """After a start: deliveries a previous process left open, for jobs that ended."""
        for record in self._activity.recent(limit=1_000_000):
            if record.terminal:
                self.resume(record)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, record: JobRecord) -> None:
        try:
            body = json.dumps(_payload(record), separators=(",", ":")).encode()
            signature = sign(await asyncio.to_thread(self._secret), body)
            deadline = (record.finished_at or time.time()) + self._config().webhooks.retry_for
            await self._attempts(record, body, signature, deadline)
        finally:
            self._sending.discard(record.id)

    async def _attempts(
        self, record: JobRecord, body: bytes, signature: str, deadline: float
    ) -> None:
        hook = record.webhook or {}
        while True:
            state, status, error = await self._attempt(str(hook["url"]), record.id, body, signature)
            hook.update(attempts=int(hook.get("attempts") or 0) + 1, status=status, error=error)
            wait = min(self.first_retry * 2 ** (hook["attempts"] - 1), _MAX_BACKOFF)
            wait *= random.uniform(0.5, 1.0)
            if state == "sending" and time.time() + wait > deadline:
                state = "failed"
            hook["state"] = state
            self._activity.update(record)
            if state != "sending":
                return
            await asyncio.sleep(wait)

    async def _attempt(
        self, url: str, job_id: str, body: bytes, signature: str
    ) -> tuple[str, int | None, str | None]:
        """One POST: the delivery's state after it, the answer's status, what went wrong."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature,
            "X-Dispatch-Delivery": job_id,
            "User-Agent": "comfyui-dispatch-webhook",
        }
        try:
            host = urlsplit(url).hostname or ""
            refuse_internal_literal(host, field="webhook", allow_internal=self.allow_internal)
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
        except InternalAddress as refused:
            return "refused", None, str(refused)
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            if _refused_by_policy(failure):
                return "refused", None, "the receiver resolves only to internal addresses"
            return "sending", None, f"{type(failure).__name__}: {str(failure)[:200]}"
        if 200 <= status < 300:
            return "delivered", status, None
        if status >= 500 or status in _RETRIED:
            return "sending", status, f"the receiver answered {status}"
        return "failed", status, f"the receiver answered {status}"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = OutboundResolver(allow_internal=self.allow_internal)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver, limit=32),
                timeout=aiohttp.ClientTimeout(total=_ATTEMPT_TIMEOUT),
            )
        return self._session

    def _secret(self) -> bytes:
        """`DISPATCH_WEBHOOK_SECRET`, else the folder's `webhook_secret`, made on first use."""
        given = os.environ.get("DISPATCH_WEBHOOK_SECRET", "").strip()
        if given:
            return given.encode()
        path = self._folder / "webhook_secret"
        try:
            kept = path.read_bytes().strip()
        except FileNotFoundError:
            kept = b""
        if kept:
            return kept
        made = secrets.token_hex(32).encode()  # never an empty key: anyone could sign
        write_atomically(path, made + b"\n")
        path.chmod(0o600)
        return made


def _payload(record: JobRecord) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("webhook", None)
    return {"event": "job.ended"} | data


def _refused_by_policy(failure: BaseException) -> bool:
    """Whether our resolver refused the name (aiohttp wraps what it raised)."""
    seen: BaseException | None = failure
    for _ in range(10):  # a chain of causes, never a cycle
        if seen is None:
            return False
        if isinstance(seen, RefusedName):
            return True
        seen = seen.__cause__ or getattr(seen, "os_error", None)
    return False
