"""A fake metrics endpoint on 127.0.0.1 (OS-chosen port) that can stop, come back, or stall."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # come back on the same port at once

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (the scraper's timeout) is expected here


class FakeEndpoint:
    """Serves ``body`` at any path; ``delay_s`` stalls each answer; ``stop``/``start`` again
    on the same port make it go away and come back; ``redirect_to`` answers 302 there instead.
    ``headers`` holds each request's headers."""

    def __init__(self, body: str = "", content_type: str = "text/plain; version=0.0.4") -> None:
        self.body = body
        self.content_type = content_type
        self.delay_s = 0.0
        self.redirect_to = ""
        self.headers: list[dict[str, str]] = []
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> FakeEndpoint:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.headers.append(dict(self.headers.items()))
                if owner.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                data = owner.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", owner.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)


class TrickleEndpoint:
    """A raw socket server on 127.0.0.1 (OS-chosen port) that answers any request with
    ``head`` and then writes ``piece`` every ``every_s``, ``count`` times (``None``: until
    stopped). ``stop`` closes the listener and every connection, and joins its threads."""

    def __init__(self, head: bytes, piece: bytes, every_s: float, count: int | None) -> None:
        self.head, self.piece, self.every_s, self.count = head, piece, every_s, count
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> TrickleEndpoint:
        self._accepting.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                conn.sendall(self.head)
                sent = 0
                next_at = time.monotonic()
                while not self._stop.is_set() and (self.count is None or sent < self.count):
                    conn.sendall(self.piece)
                    sent += 1
                    next_at += self.every_s
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
            except OSError:
                return  # the client gave up: expected

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accepting.join(5)
        for thread in self._threads:
            thread.join(5)
