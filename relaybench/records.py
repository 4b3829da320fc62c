"""The run folder's contract: one request's record, the error taxonomy, and summary.json.

``loadtests`` writes records (``records/<target>.<worker>.jsonl``, one JSON object per line) and
``reports`` reads them; both take the fields from ``Record`` below and nothing else spells them.
The Arrow schema the reports parse with is derived from ``Record`` (``arrow_schema``), so adding an
optional field is one line in ``Record``: ``session: int | None = None``. ``docs/run-folder.md``
says what each field means.

Sans-I/O and cheap to import (it runs inside every Locust process): pyarrow is imported only
when ``arrow_schema`` is first called.

The error taxonomy, drawn once::

    outcome of a request
    ├── ok                  a complete, valid answer ([DONE] seen for streams)
    └── error
        ├── connect         no connection (refused, DNS, connect timeout)
        ├── timeout         connected, then no bytes for longer than the read timeout
        ├── http_429        rate limited
        ├── http_4xx        any other 4xx
        ├── http_5xx        any 5xx (and any other non-2xx status)
        ├── stream_error    an SSE ``error`` object in the stream
        ├── truncated       the stream or body ended early (no ``[DONE]``, connection cut)
        ├── malformed       a data line or body that is not the JSON we expect
        └── interrupted     the run was stopped (Ctrl-C, SIGTERM) while the request was in
                            flight; the record keeps what had arrived

The record builder and the user call ``from_status`` / ``from_exception``; nothing else maps
what happened onto an error type.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    import pyarrow as pa

# -- the error taxonomy --------------------------------------------------------------------------

CONNECT = "connect"
TIMEOUT = "timeout"
HTTP_429 = "http_429"
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
STREAM_ERROR = "stream_error"
TRUNCATED = "truncated"
MALFORMED = "malformed"
INTERRUPTED = "interrupted"

ERROR_TYPES = (
    CONNECT, TIMEOUT, HTTP_429, HTTP_4XX, HTTP_5XX, STREAM_ERROR, TRUNCATED, MALFORMED, INTERRUPTED,
)  # fmt: skip
UNKNOWN = "unknown"  # how reports count a failed record that carries no error type


def from_status(status: int) -> str | None:
    """The error type of an HTTP status, or None for 2xx."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return HTTP_429
    if 400 <= status < 500:
        return HTTP_4XX
    return HTTP_5XX


def from_exception(exc: BaseException, *, connected: bool) -> str:
    """The error type of a transport exception.

    ``connected`` says whether the request was already on the wire: a timeout before that is a
    failure to connect, after it a read timeout; a reset after it is a truncated answer.
    """
    if isinstance(exc, (TimeoutError, socket.timeout)) or type(exc).__name__ == "Timeout":
        return TIMEOUT if connected else CONNECT
    if not connected:
        return CONNECT
    return TRUNCATED


def cause(error: str | None, status: int | None, detail: str | None) -> str:
    """A failure's cause in one line: the first line of its ``error_detail`` (which starts with
    ``HTTP <status>:`` for an HTTP error), else its type and status. The console, the early stop
    and summary.json's ``error_causes`` group failures by it."""
    first = (detail or "").strip().splitlines()
    if first:
        return first[0]
    if status and status >= 400:
        return f"HTTP {status}"
    return error or UNKNOWN


# -- one request's record ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Record:
    """The fields of one record line, in line order, with their types and defaults.

    A field without a default must be given when a record is made (``new_record``). ``X | None``
    means the value may be null. Times are ms from the send unless the name ends in ``_ns``
    (Unix nanoseconds). Records are plain dicts at run time (``new_record``); this class is the
    definition, not a container.
    """

    target: str
    worker: str
    seq: int
    stream: bool
    users: int = 0
    step: int | None = None
    rate: float | None = None
    intended_ns: int | None = None
    start_ns: int
    headers_ms: float | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    chunks_ms: list[float] = field(default_factory=list)
    lags_ms: list[float] | None = None
    status: int | None = None
    ok: bool = False
    error: str | None = None
    error_detail: str | None = None
    output_tokens: int = 0
    usage_tokens: int | None = None
    content_chunks: int = 0
    max_tokens: int | None = None
    trace_row: int | None = None
    session: str | None = None
    turn: int | None = None
    prompt_chars: int | None = None
    prompt_tokens: int | None = None
    attempts: int = 1
    attempt_status: list[int] | None = None
    attempt_error: list[str] | None = None
    attempt_start_ms: list[float] | None = None
    attempt_wait_ms: list[float] | None = None
    error_pause_ms: float | None = None  # the pause after this failure (loadtests.pacing)


@dataclass(frozen=True)
class FieldSpec:
    """One record field as the readers see it: its scalar type, list-ness and nullability."""

    name: str
    type: type  # str, int, float or bool; the element type for a list
    is_list: bool
    nullable: bool
    required: bool  # no default: every record carries it


def _spec(name: str, hint: Any, f: dataclasses.Field) -> FieldSpec:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    nullable = type(None) in args
    (base,) = [a for a in args if a is not type(None)]
    is_list = typing.get_origin(base) is list
    scalar = typing.get_args(base)[0] if is_list else base
    if scalar not in (str, int, float, bool):
        raise TypeError(f"record field {name}: unsupported type {hint!r}")
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return FieldSpec(name, scalar, is_list, nullable, required)


def field_specs(definition: type = Record) -> tuple[FieldSpec, ...]:
    """The fields of a record definition (``Record``, or a dataclass extending it)."""
    hints = typing.get_type_hints(definition)
    return tuple(_spec(f.name, hints[f.name], f) for f in dataclasses.fields(definition))


FIELDS = field_specs()
FIELD_NAMES = tuple(f.name for f in FIELDS)
LIST_FIELDS = tuple(f.name for f in FIELDS if f.is_list)
_REQUIRED = frozenset(f.name for f in FIELDS if f.required)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Record)}  # MISSING where required
_FACTORIES = {
    f.name: f.default_factory
    for f in dataclasses.fields(Record)
    if f.default_factory is not dataclasses.MISSING
}


def new_record(**values: Any) -> dict[str, Any]:
    """A record dict with every field, in line order: the given values, defaults for the rest."""
    unknown = values.keys() - _DEFAULTS.keys()
    missing = _REQUIRED - values.keys()
    if unknown or missing:
        raise TypeError(f"record: unknown fields {sorted(unknown)}, missing {sorted(missing)}")
    rec = {**_DEFAULTS, **values}
    for name, make in _FACTORIES.items():
        if name not in values:
            rec[name] = make()
    return rec


def _type_ok(value: Any, scalar: type) -> bool:
    if scalar is float:  # JSON has one number type: an int is a valid float, a bool is not
        return type(value) in (int, float)
    return type(value) is scalar


def problems(obj: Mapping[str, Any], *, complete: bool = True) -> list[str]:
    """What makes ``obj`` not a valid record (empty list: valid); extra fields are allowed.

    ``complete`` demands every field; without it a missing field counts as null (how the
    reports read a line) and only a value of the wrong type, or a null where none is allowed,
    is a problem.
    """
    out = []
    for spec in FIELDS:
        if spec.name not in obj:
            if complete:
                out.append(f"{spec.name}: missing")
            continue
        value = obj[spec.name]
        if value is None:
            if complete and not spec.nullable:
                out.append(f"{spec.name}: null")
        elif spec.is_list:
            if type(value) is not list or not all(_type_ok(v, spec.type) for v in value):
                out.append(f"{spec.name}: not a list of {spec.type.__name__}")
        elif not _type_ok(value, spec.type):
            out.append(f"{spec.name}: not {spec.type.__name__}: {value!r:.40}")
    return out


@functools.cache
def arrow_schema() -> pa.Schema:
    """The Arrow schema of a record line, derived from ``Record``.

    Every Arrow field is nullable even where the record's is not: the reader turns a missing
    value into null and decides itself what a null means (``reports.records``).
    """
    import pyarrow as pa

    scalars = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    return pa.schema(
        [(f.name, pa.list_(scalars[f.type]) if f.is_list else scalars[f.type]) for f in FIELDS]
    )


# -- summary.json --------------------------------------------------------------------------------

SCHEMA_VERSION = 1


class Stats(TypedDict):
    """A STATS block; an empty sample has ``count: 0`` and null everywhere else."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None


STAT_KEYS = tuple(Stats.__annotations__)
# the one set of percentiles every report, gate and bench uses: {"p50": 50.0, ...}
PERCENTILES = {key: float(key[1:]) for key in STAT_KEYS if key[0] == "p" and key[1:].isdigit()}


class RunBlock(TypedDict):
    scenario: str
    started_at: str
    duration_s: float
    command: str
    ended_at: NotRequired[str | None]
    interrupted: NotRequired[bool]
    users: NotRequired[int]
    seed: NotRequired[int]


class ErrorCause(TypedDict):
    """One cause of failed requests (``cause``) and how many failed with it."""

    cause: str
    error: str
    status: int | None
    count: int


class TargetSummary(TypedDict):
    """One target of summary.json: the contract's fields first, then ours."""

    requests: int
    ok: int
    errors: dict[str, int]
    ttft_ms: Stats
    itl_ms: Stats
    e2e_ms: Stats
    output_tokens: int
    output_tokens_per_s: float
    requests_per_s: float
    first_token_lag_ms: Stats | None
    chunk_lag_ms: Stats | None
    error_rate: float | None  # 1 - ok / requests; gate and compare read it from here
    duration_s: float
    stream: bool
    kind: str | None
    headers_ms: Stats
    usage_mismatches: int
    interrupted: NotRequired[int]  # records cut off by the run's stop: in none of the above
    server: NotRequired[dict[str, dict[str, Any]]]  # per server, from server/ (reports.server)
    error_causes: NotRequired[list[ErrorCause]]  # most frequent first (reports.causes)
    schedule_lag_ms: NotRequired[Stats]  # open-loop targets only, with the two below
    ttft_response_ms: NotRequired[Stats]
    e2e_response_ms: NotRequired[Stats]
    attempts: NotRequired[int]  # with a client retry policy (reports.traffic), the six below
    retry_amplification: NotRequired[float]
    attempts_per_request: NotRequired[dict[str, int]]
    retried: NotRequired[int]
    recovered: NotRequired[int]
    user_error_rate: NotRequired[float]
    attempt_error_rate: NotRequired[float]


class Health(TypedDict):
    degraded: bool
    reasons: list[str]
    loadgen_cpu_max_pct: float
    checked: list[str]
    leaks: NotRequired[list[str]]  # the leak watch's flagged series (reports.leaks)


class Summary(TypedDict):
    schema_version: int
    run: RunBlock
    targets: dict[str, TargetSummary]
    health: Health
    overhead: dict[str, dict[str, Any]]
    calibration: NotRequired[dict[str, Any]]
    notes: NotRequired[list[str]]
