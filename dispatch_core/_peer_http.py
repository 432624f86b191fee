"""Reading from a peer that may be hostile: every answer bounded in time, size and depth.

A configured server can be compromised, misconfigured, or not ComfyUI at all (an SSH port, a
proxy that echoes headers). So, for every request:

- no redirect is followed: a 3xx is a BadResponse, and our headers reach the configured host
  only (a peer's redirect must not turn a file route into a fetch of any internal URL);
- every request but a download has a total deadline, `timeouts.request`, so that a peer
  dripping one byte at a time cannot hold it longer; a download has a deadline per read and
  a size limit checked while it streams;
- JSON is read with `loads_bounded`, so that depth and numbers are bounded too;
- an error never quotes the peer's bytes: an answer that is not JSON is described by its
  size, a parser's complaint (which quotes what it got) by what it means. Only the
  protocol's own messages (a rejection's text, a node's exception) are kept, since users
  need them, and they go through `PeerHTTP.scrub`: bounded, and with this server's header
  values and URL password masked.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from ._json import JSONLimitError, loads_bounded
from .config import ServerConfig, Timeouts
from .errors import BadResponse, DispatcherClosed, PeerUnreachable

__all__ = ["MASK", "MAX_PEER_TEXT", "Download", "PeerHTTP", "scrub", "secrets_of", "shown_url"]

MASK = "********"
MAX_PEER_TEXT = 2000
"""Characters kept of one message from a peer: a node's exception, a rejection's details."""
_MAX_JSON_BYTES = 64 * 1024 * 1024
_CHUNK = 1 << 16
_NOT_HTTP = "did not answer HTTP: is this a ComfyUI server?"


def secrets_of(server: ServerConfig) -> tuple[str, ...]:
    """What must never be shown back: each header value (and the credential after a
    scheme such as `Bearer`), and the URL's password as written and decoded. Longest first,
    so that a secret containing another is masked whole."""
    found: set[str] = set()
    for value in server.headers.values():
        found.add(value.strip())
        found.add(value.strip().partition(" ")[2].strip())
    parts = urlsplit(server.url)
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        found.update((parts.password, password))
        # aiohttp sends the URL's credentials as `Authorization: Basic <base64>`.
        for encoding in ("latin1", "utf-8"):
            with contextlib.suppress(UnicodeEncodeError):
                found.add(base64.b64encode(f"{user}:{password}".encode(encoding)).decode())
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: Sequence[str], limit: int = MAX_PEER_TEXT) -> str:
    """`text` with every secret masked, control characters dropped, cut to `limit`.

    Secrets are masked before the cut, so that a secret across the cut cannot show in part.
    """
    for secret in secrets:
        text = text.replace(secret, MASK)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return "".join(c for c in text if c >= " " or c in "\n\t")


def shown_url(url: str) -> str:
    """`url` with its password, if any, masked: for messages and status lines."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def describe_failure(error: BaseException) -> str:
    """Our words for a connection that failed; never aiohttp's own text about what came back
    (a disconnect can quote the half-read answer, with any header the peer echoed)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        reason = f": {error.strerror}" if error.strerror else ""
        return f"cannot connect to host {error.host}:{error.port}{reason}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before answering"
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    return f"the connection failed ({type(error).__name__})"


class Download:
    """One file streaming from a peer's `/view`. Read it with `chunks()` inside the
    `open_view` block; the connection closes when the block ends."""

    def __init__(self, peer: PeerHTTP, response: aiohttp.ClientResponse, filename: str):
        self.filename = filename
        """The name asked for, as the peer's history gave it: not to be trusted."""
        self.content_type: str = response.content_type
        """The peer's Content-Type, as given (without parameters): not to be trusted."""
        self.size: int | None = response.content_length
        """The length the peer declared, or None."""
        self._peer = peer
        self._response = response

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece; a BadResponse once it passes `max_download_bytes`."""
        limit, total = self._peer.max_download_bytes, 0
        with self._peer._translated("GET /view", self._peer.timeouts.request):
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise BadResponse(
                        f"GET /view: over the {limit} byte limit", server=self._peer.name
                    )
                yield chunk
        if self.size is not None and total != self.size:
            raise BadResponse(
                f"GET /view: body truncated at {total} of {self.size} bytes",
                server=self._peer.name,
            )


class PeerHTTP:
    """The HTTP side of one peer: requests, their bounds, and the words for their failures."""

    def __init__(
        self,
        server: ServerConfig,
        session: aiohttp.ClientSession,
        *,
        timeouts: Timeouts | None,
        max_download_bytes: int,
    ):
        self.name = server.name
        self.url = server.url
        self.timeouts = timeouts or Timeouts()
        self.max_download_bytes = max_download_bytes
        self._session = session
        self._headers = dict(server.headers)
        self._secrets = secrets_of(server)
        self._shown_url = shown_url(server.url)

    def scrub(self, text: str, limit: int = MAX_PEER_TEXT) -> str:
        """The one way a peer's own words enter an error: bounded, this server's secrets masked."""
        return scrub(text, self._secrets, limit)

    # -- requests -----------------------------------------------------------------------

    async def get_json(self, path: str) -> Any:
        async with self._request("GET", path) as response:
            self._check_status(response, f"GET {path}")
            return await self._json(response, f"GET {path}")

    async def post(self, path: str, body: Any) -> None:
        async with self._request("POST", path, json=body) as response:
            self._check_status(response, f"POST {path}")

    @contextlib.asynccontextmanager
    async def open_view(
        self, filename: str, subfolder: str = "", type: str = "output"
    ) -> AsyncIterator[Download]:
        """Stream one output file: `async with peer.open_view(name) as download:` then
        `async for chunk in download.chunks()`. Refused at once when the declared length is
        over `max_download_bytes`, and while streaming when the body grows past it."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeouts.request, sock_read=self.timeouts.request
        )
        async with self._opened("GET", "/view", timeout, params=params) as response:
            if response.status == 404:
                raise BadResponse(
                    f"the peer has no file {self.scrub(filename, 200)!r} "
                    f"(subfolder {self.scrub(subfolder, 200)!r}, type {self.scrub(type, 20)})",
                    server=self.name,
                    status=404,
                )
            self._check_status(response, "GET /view")
            declared = response.content_length
            if declared is not None and declared > self.max_download_bytes:
                raise BadResponse(
                    f"GET /view: {declared} bytes is over the {self.max_download_bytes} byte limit",
                    server=self.name,
                )
            yield Download(self, response, filename)

    @contextlib.asynccontextmanager
    async def _request(
        self, method: str, path: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose answer, body included, must come within `timeouts.request`."""
        seconds = self.timeouts.request
        timeout = aiohttp.ClientTimeout(total=seconds, sock_connect=seconds)
        with self._translated(f"{method} {path}", seconds):
            async with self._opened(method, path, timeout, **kwargs) as response:
                yield response

    @contextlib.asynccontextmanager
    async def _opened(
        self, method: str, path: str, timeout: aiohttp.ClientTimeout, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The peer's answer, headers read, redirects refused; failures until then in our
        words. What the caller does with the body is the caller's to translate."""
        what = f"{method} {path}"
        if self._session.closed:
            raise DispatcherClosed(
                f"{what}: the client session is closed; read outputs before closing the dispatcher",
                server=self.name,
            )
        with self._translated(what, timeout.total or timeout.sock_read or 0.0):
            response = await self._session.request(
                method,
                self.url + path,
                headers=self._headers,
                timeout=timeout,
                allow_redirects=False,
                **kwargs,
            )
        async with response:
            if 300 <= response.status < 400:
                raise BadResponse(
                    f"{what} answered a redirect (HTTP {response.status}); "
                    "redirects are not followed",
                    server=self.name,
                    status=response.status,
                )
            yield response

    @contextlib.contextmanager
    def _translated(self, what: str, seconds: float) -> Iterator[None]:
        """aiohttp's failures as ours, without the bytes its messages quote."""
        try:
            yield
        except TimeoutError:
            raise PeerUnreachable(
                f"{what} to {self._shown_url}: no answer within {seconds:g} s", server=self.name
            ) from None
        except aiohttp.ClientPayloadError:
            raise BadResponse(
                f"{what}: the body was cut short or malformed", server=self.name
            ) from None
        except aiohttp.ClientResponseError:  # the parser refused the answer: not HTTP
            raise BadResponse(
                f"{what} to {self._shown_url} {_NOT_HTTP}", server=self.name
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            raise PeerUnreachable(
                f"{what} to {self._shown_url} failed: {describe_failure(error)}", server=self.name
            ) from None

    # -- answers ------------------------------------------------------------------------

    def _check_status(self, response: aiohttp.ClientResponse, what: str) -> None:
        if response.status >= 400:
            raise BadResponse(
                f"{what} answered HTTP {response.status}", server=self.name, status=response.status
            )

    async def _json(self, response: aiohttp.ClientResponse, what: str) -> Any:
        raw = await self._read_limited(response, _MAX_JSON_BYTES, what)
        if not raw:
            return {}
        try:
            return loads_bounded(raw)
        except JSONLimitError as error:
            if str(error).startswith("not valid JSON"):
                text = f"{what} answered something that is not JSON ({len(raw)} bytes)"
            else:
                text = f"{what} answered JSON we refuse: {error}"
            raise BadResponse(text, server=self.name, status=response.status) from None

    async def _read_limited(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        declared = response.content_length
        if declared is not None and declared > limit:
            raise BadResponse(
                f"{what}: {declared} bytes is over the {limit} byte limit", server=self.name
            )
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise BadResponse(f"{what}: over the {limit} byte limit", server=self.name)
        if declared is not None and len(body) != declared:
            raise BadResponse(
                f"{what}: body truncated at {len(body)} of {declared} bytes", server=self.name
            )
        return bytes(body)
