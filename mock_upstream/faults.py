"""Fault injection: the ``X-Mock-Fault`` header forms and seeded fault rates (sans-I/O).

Header forms (the contract):

    status:CODE          answer CODE (400-599) with an OpenAI-shaped error; 429 has Retry-After
    disconnect-after:N   cut the connection after N content chunks
    stall-after:N        stop sending after N content chunks, keep the connection open
    malformed-after:N    send one invalid JSON data line after N content chunks, then continue
    no-done              send the whole stream (usage chunk too, if asked) but no ``[DONE]``
                         line, then end the response cleanly (streams only)
    hang                 read the request, then send nothing at all, not even the status line,
                         until the client goes away (or the server stops)

Rates (``--fault-rate KIND=P``, repeatable) use the same kinds without the argument position:
``status:429=0.01``, ``disconnect=0.005``, ``stall=0.001``, ``malformed=0.01``, ``no-done=0.01``,
``hang=0.001``. A mid-stream
fault's position is drawn uniformly over the request's chunks, from the request's seeded RNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

VALID_FORMS = "status:CODE, disconnect-after:N, stall-after:N, malformed-after:N, no-done, hang"
VALID_RATE_KINDS = "status:CODE, disconnect, stall, malformed, no-done, hang"
_AFTER = {"disconnect-after": "disconnect", "stall-after": "stall", "malformed-after": "malformed"}
_FORM = {kind: form for form, kind in _AFTER.items()}
_BARE = ("no-done", "hang")  # forms without an argument
MID_STREAM = frozenset(_AFTER.values())  # the kinds that act after N content chunks


class FaultSyntaxError(ValueError):
    """The text is not one of the valid forms; the message lists them."""


@dataclass(frozen=True)
class Fault:
    kind: str  # "status" | "disconnect" | "stall" | "malformed" | "no-done" | "hang"
    value: int  # the status code, or the number of content chunks before the fault (else 0)

    @property
    def label(self) -> str:
        """The key counted in ``/mock/stats`` ``faults_by_kind``."""
        return f"status:{self.value}" if self.kind == "status" else self.kind

    @property
    def text(self) -> str:
        """The header form (``disconnect-after:3``), as ``/mock/requests`` shows it."""
        if self.kind in _FORM:
            return f"{_FORM[self.kind]}:{self.value}"
        return self.label


@dataclass(frozen=True)
class FaultRate:
    kind: str
    status: int  # for kind "status"; 0 otherwise
    probability: float


def _int(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise FaultSyntaxError(f"{what} must be a non-negative integer, got {text!r}")
    return int(text)


def parse_fault(text: str) -> Fault:
    """Parse one ``X-Mock-Fault`` value; the error message always lists the valid forms."""
    name, sep, arg = text.strip().partition(":")
    name = name.strip().lower()
    try:
        if sep and name == "status":
            code = _int(arg.strip(), "status CODE")
            if not 400 <= code <= 599:
                raise FaultSyntaxError(f"status CODE must be 400-599, got {code}")
            return Fault("status", code)
        if sep and name in _AFTER:
            return Fault(_AFTER[name], _int(arg.strip(), f"{name} N"))
        if not sep and name in _BARE:
            return Fault(name, 0)
        raise FaultSyntaxError(f"unknown fault {text!r}")
    except FaultSyntaxError as exc:
        raise FaultSyntaxError(f"{exc}; valid forms: {VALID_FORMS}") from None


def parse_rate(text: str) -> FaultRate:
    """Parse one ``--fault-rate`` value such as ``status:429=0.01`` or ``disconnect=0.005``."""
    kind, sep, prob_text = text.rpartition("=")
    try:
        prob = float(prob_text)
    except ValueError:
        prob = -1.0
    if not sep or not 0.0 <= prob <= 1.0:
        raise FaultSyntaxError(f"fault rate {text!r} must be KIND=P with 0 <= P <= 1")
    kind = kind.strip().lower()
    if kind.startswith("status:"):
        code = _int(kind[7:], "status CODE")
        if not 400 <= code <= 599:
            raise FaultSyntaxError(f"status CODE must be 400-599, got {code}")
        return FaultRate("status", code, prob)
    if kind in MID_STREAM or kind in _BARE:
        return FaultRate(kind, 0, prob)
    raise FaultSyntaxError(f"unknown fault kind {kind!r}; valid kinds: {VALID_RATE_KINDS}")


def draw_fault(rng: random.Random, rates: tuple[FaultRate, ...], n_chunks: int) -> Fault | None:
    """Seeded draw: at most one fault per request, the first rate whose coin comes up.

    Always draws exactly two numbers per rate, so the RNG position afterwards (and hence the
    rest of the plan) does not depend on which fault fired.
    """
    chosen: Fault | None = None
    for rate in rates:
        coin, where = rng.random(), rng.random()
        if chosen is None and coin < rate.probability:
            value = int(where * max(1, n_chunks)) if rate.kind in MID_STREAM else rate.status
            chosen = Fault(rate.kind, value)
    return chosen
