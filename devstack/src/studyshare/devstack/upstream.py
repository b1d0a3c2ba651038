"""A lean HTTP/1.1 transport for httpx: keep-alive connections parsed by httptools.

The gateway's hot path spent most of its CPU in httpcore, anyio and h11. This transport plugs
into the same shared `httpx.AsyncClient` API (`httpx.AsyncBaseTransport`) but talks to the
upstreams over plain asyncio protocols with the C parser uvicorn uses. It streams both ways
with flow control, reuses idle connections per origin, retries once on a reused connection
the upstream had closed (bodiless requests only), and raises httpx's own exceptions.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping

import httptools
import httpx

#: a response body buffered beyond this pauses reading from the upstream
HIGH_WATER = 1024 * 1024


class _Connection(asyncio.Protocol):
    """One upstream connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = time.monotonic()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self.wakeup = asyncio.Event()
        self.got_bytes = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid upstream response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._can_write.set()
        if not self.complete:
            if self.head.done() and not self.keep_alive:
                self.on_message_complete()  # a body delimited by the end of the connection
            else:
                self._fail(httpx.RemoteProtocolError("upstream closed the connection"))

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        # llhttp answers this only inside its callbacks, so it is kept here
        self.keep_alive = self.parser.should_keep_alive()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self.wakeup.set()

    def on_message_complete(self) -> None:
        self.complete = True
        self.wakeup.set()

    # -- used by the transport -------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # retrieved: no "never retrieved" warning if nobody waits
        self.wakeup.set()

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise httpx.WriteError("upstream connection closed")
        self.transport.write(data)
        if not self._can_write.is_set():
            await self._can_write.wait()

    async def read_chunk(self, wait_s: float | None) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self.chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), wait_s)
            except TimeoutError:
                raise httpx.ReadTimeout("upstream body timed out") from None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.buffered <= HIGH_WATER // 4 and self.transport is not None:
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamBody(httpx.AsyncByteStream):
    """A response body; `aclose()` gives the connection back to the pool (or closes it)."""

    def __init__(
        self, transport: HttpToolsTransport, key: tuple[str, int], conn: _Connection, timeout
    ) -> None:
        self._transport = transport
        self._key = key
        self._conn = conn
        self._timeout = timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.read_chunk(self._timeout)) is not None:
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._transport._release(self._key, self._conn)


class HttpToolsTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 (plain TCP) to the upstreams, pooled per host and port."""

    def __init__(self, max_idle_per_origin: int = 256, keepalive_expiry: float = 30.0) -> None:
        self.max_idle = max_idle_per_origin
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol("only http:// upstreams")
        head, chunked = _request_head(request)
        status, headers, body = await self.send(
            (request.url.host, request.url.port or 80),
            head,
            request.stream,  # type: ignore[arg-type]
            chunked=chunked,
            is_head=request.method == "HEAD",
            replayable=isinstance(request.stream, httpx.ByteStream),
            timeouts=request.extensions.get("timeout", {}),
        )
        return httpx.Response(
            status, headers=headers, stream=body, extensions={"http_version": b"HTTP/1.1"}
        )

    async def send(
        self,
        key: tuple[str, int],
        head: bytes,
        body: AsyncIterable[bytes] | None,
        *,
        chunked: bool,
        is_head: bool,
        replayable: bool,
        timeouts: Mapping[str, float | None],
    ) -> tuple[int, list[tuple[bytes, bytes]], UpstreamBody]:
        """One exchange without httpx objects (the gateway's hot path): the request head as
        bytes, a body to stream, back the status, raw headers and a body stream to close."""
        conn, reused = await self._acquire(key, timeouts.get("connect"))
        try:
            await self._exchange(conn, head, body, chunked, timeouts)
        except (httpx.RemoteProtocolError, httpx.WriteError):
            if not (reused and replayable and not conn.got_bytes):
                raise
            # the upstream had closed that idle keep-alive connection: once more, fresh
            conn, _ = await self._acquire(key, timeouts.get("connect"), fresh=True)
            await self._exchange(conn, head, body, chunked, timeouts)
        if is_head:
            # the parser cannot know that no body follows: done, and never reused
            conn.complete = True
            conn.closed = True
        status = conn.parser.get_status_code()
        return status, conn.headers, UpstreamBody(self, key, conn, timeouts.get("read"))

    async def _exchange(
        self,
        conn: _Connection,
        head: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
        timeouts: Mapping[str, float | None],
    ) -> None:
        """Send the request, wait for the response head; the connection is closed on failure."""
        try:
            await conn.write(head)
            if body is not None:
                try:
                    async with asyncio.timeout(timeouts.get("write")):
                        await _write_body(conn, body, chunked)
                except TimeoutError:
                    raise httpx.WriteTimeout("upstream did not take the body in time") from None
            try:
                async with asyncio.timeout(timeouts.get("read")):
                    await conn.head
            except TimeoutError:
                raise httpx.ReadTimeout("upstream did not answer in time") from None
        except BaseException:
            conn.close()
            raise

    async def _acquire(
        self, key: tuple[str, int], connect_timeout: float | None, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle and not fresh:
            conn = idle.pop()
            if conn.closed or now - conn.idle_since > self.keepalive_expiry:
                conn.close()
                continue
            conn._reset()
            return conn, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(_Connection, key[0], key[1])
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from None
        return conn, False

    def _release(self, key: tuple[str, int], conn: _Connection) -> None:
        if not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


def _request_head(request: httpx.Request) -> tuple[bytes, bool]:
    target = request.url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    chunked = False
    for name, value in request.headers.raw:
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n", chunked


async def _write_body(conn: _Connection, stream: AsyncIterable[bytes], chunked: bool) -> None:
    async for chunk in stream:
        if not chunk:
            continue
        if chunked:
            await conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            await conn.write(chunk)
    if chunked:
        await conn.write(b"0\r\n\r\n")
