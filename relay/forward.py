"""The streamed body's fast path: each upstream read filtered and written from its callback.

While a stream's task waits for the upstream, ``Forward`` is the upstream connection's sink
(``H1Response.aiter_raw(sink)``): each read's body goes through the stream's ``StreamFilter``
and straight to the client's socket (``relaybench.wire.Wire``) from ``data_received``, so a
chunk costs no task wake-up, no async-generator step and no ASGI ``send``. What it cannot do
there it keeps for the task, which looks after every stop of the pump: the bytes the client's
socket would not take now (uvicorn paused writing: the task sends them with ``send``, which
waits for the drain), or the exception a block raised, which the task raises as the ``send``
path would (``UpstreamBroken``: the good blocks before it, then the error line; anything else is
the relay's own error, logged with the request). It must not escape into the upstream
connection's callback, where the event loop would close that socket and the error would read
as a cut upstream. The bytes and their order on the wire are those of the ``send`` path: one
write per upstream read. ``writes`` counts what went this way (``/health``'s
``direct_writes``: tests check streams take this path).
"""

from __future__ import annotations

from collections.abc import Callable

from relay.exchange import Exchange
from relaybench.wire import Wire


class Forward:
    __slots__ = ("exchange", "failed", "feed", "held", "wire", "writes")

    def __init__(self, feed: Callable[[bytes], bytes], wire: Wire, exchange: Exchange) -> None:
        self.feed = feed
        self.wire = wire
        self.exchange = exchange
        self.held = b""  # filtered bytes the client's socket did not take: the task sends them
        self.failed: Exception | None = None  # what a block raised: the task raises it
        self.writes = 0

    def __call__(self, chunk: bytes) -> bool:
        """Pass one upstream read on; False: stop, the task takes over (see the module)."""
        exchange = self.exchange
        if exchange.reason is not None:  # interrupted: its task is being cancelled
            return False
        try:
            out = self.feed(chunk)
            if out:
                if not self.wire.write(out):
                    self.held = out
                    return False
                self.writes += 1
        except Exception as exc:  # handed to the task, which raises it
            self.failed = exc
            return False
        exchange.last = exchange.loop.time()  # after the write, as on the send path
        return True
