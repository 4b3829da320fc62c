"""Small asyncio test servers run in a background thread: deliberately broken relays in front of
the mock, and a server that is not OpenAI-compatible at all.

``BrokenRelay(upstream, defect)`` forwards ``POST /v1/chat/completions`` to the mock with httpx
and streams the body back chunked. Apart from its planted defect it is a plain proxy with no
timeouts (so it also hangs on a stall: that is the ``hang_on_stall`` defect, named for the
scenario meant to catch it). Defects:

    cut_to_done        an upstream cut mid-stream is ended with ``data: [DONE]`` and a clean close
    hang_on_stall      no idle timeout: a stalled upstream hangs the client
    retry_after_bytes  an upstream cut mid-stream is retried, the new stream appended
    ignore_disconnect  a client that leaves is not noticed: the upstream is read to its end
    retry_storm        any non-200 answer is retried at once, up to 8 times (400s included)
    mangle_utf8        each upstream read is decoded on its own (split characters become U+FFFD)

Without a defect a cut upstream is passed on as a cut client connection (honest).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable

import httpx

DEFECTS = (
    "cut_to_done",
    "hang_on_stall",
    "retry_after_bytes",
    "ignore_disconnect",
    "retry_storm",
    "mangle_utf8",
)
STORM = 8

# (request head, request body, reader, writer)
Handler = Callable[[bytes, bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ThreadServer:
    """An asyncio server on 127.0.0.1:0 in its own thread and loop; ``url`` once started."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.url = ""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        ).result(5)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            body = await reader.readexactly(int(length.group(1))) if length else b""
            await self.handler(head, body, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def not_openai(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers everything with an HTML 404, like a web server at the wrong address."""
    page = b"<html><body>Not Found</body></html>"
    writer.write(
        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(page), page)
    )
    await writer.drain()


async def key_echo(
    head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A 401 whose message quotes the bearer key it refused (some servers do)."""
    key = re.search(rb"(?im)^authorization:\s*bearer\s+(\S+)", head)
    said = key.group(1) if key else b"nothing"
    message = b'{"error":{"message":"invalid key %s"}}' % said
    writer.write(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(message), message)
    )
    await writer.drain()


def broken_relay(upstream: str, defect: str) -> Handler:
    assert defect in DEFECTS
    url = upstream.rstrip("/") + "/v1/chat/completions"

    async def handle(
        head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async with httpx.AsyncClient(timeout=None) as client:
            attempts = 2 if defect == "retry_after_bytes" else 1
            started = False
            for attempt in range(attempts):
                headers = {"content-type": "application/json"}
                async with client.stream("POST", url, content=body, headers=headers) as response:
                    for _ in range(STORM if defect == "retry_storm" else 0):
                        if response.status_code == 200:
                            break
                        await response.aclose()
                        response = await client.send(
                            client.build_request("POST", url, content=body, headers=headers),
                            stream=True,
                        )
                    if not started:
                        kind = response.headers.get("content-type", "application/json")
                        writer.write(
                            b"HTTP/1.1 %d X\r\ncontent-type: %s\r\n"
                            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                            % (response.status_code, kind.encode())
                        )
                        started = True
                    try:
                        await _pump(response, reader, writer, defect)
                        break
                    except httpx.TransportError:
                        if defect == "cut_to_done":
                            _chunk(writer, b"data: [DONE]\n\n")
                            break
                        if attempt + 1 == attempts:
                            return  # an honest cut: the client's connection just closes
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return handle


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


async def _pump(
    response: httpx.Response,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    defect: str,
) -> None:
    """Forward the upstream body; a client that leaves ends it (unless that is the defect)."""
    if defect == "ignore_disconnect":
        async for data in response.aiter_raw():
            if not writer.is_closing():
                _chunk(writer, data)
                try:
                    await writer.drain()
                except ConnectionError:
                    writer.close()  # the client left; keep reading the upstream anyway
        return

    async def forward() -> None:
        async for data in response.aiter_raw():
            if defect == "mangle_utf8":
                data = data.decode("utf-8", "replace").encode()
            _chunk(writer, data)
            await writer.drain()

    pump = asyncio.ensure_future(forward())
    gone = asyncio.ensure_future(reader.read())  # EOF: the client closed its connection
    try:
        await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not pump.done():
            raise ConnectionError("the client left")
        pump.result()
    finally:
        pump.cancel()
        gone.cancel()
