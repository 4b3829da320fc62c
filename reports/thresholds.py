"""The gate's thresholds file: TOML, one table per target plus ``[derived]``.

```
[relay]                          # a target name of the run
"ttft_ms.p95" = "<= 800"         # absolute limit on summary.json's value
"error_rate"  = "<= 0.01"
"ttft_ms.p50" = "<= +10%"        # relative to the same metric of the same target in --baseline

[derived]                        # metrics computed across the targets of one run
slo_ttft_ms = 1000               # settings: plain numbers / strings, not limits
"relay_added_ttft_ms.p95" = "<= 50"
"goodput_pct" = ">= 95"
```

A limit is a string ``"<OP> <NUMBER>"`` with OP ``<=`` or ``>=``. The sign before a percent
decides what the percent is:

- ``"<= +10%"`` / ``">= -5%"`` (a ``+`` or ``-`` sign, then ``%``): **relative** to the same metric
  of the same target in ``--baseline`` (at most 10 % above it; at most 5 % below it).
- ``"<= 1%"`` (no sign, then ``%``): **absolute**, in percent of the metric's own scale: on
  ``error_rate`` (a fraction 0..1) it is the fraction 0.01; on a ``*_pct`` metric (already in
  percent, e.g. ``goodput_pct``) it is 1. On any other metric (milliseconds, counts, rates) a
  percent has no absolute meaning and is refused, naming the signed form.
- ``"<= 800"`` (no ``%``): absolute, in the metric's unit.

A target's table also takes ``"server.SERVER.FIELD"``: a number of summary.json's ``server``
block for that target, e.g. ``"server.relay.cpu_s_per_1k_chunks" = "<= 5"`` (the fields are
``relaybench.scrape.usage.FIELDS``).

TOML allows a key once per table, so a metric with two limits takes a list:
``"ttft_ms.p95" = ["<= 800", "<= +15%"]``.
Every mistake is a ``UsageError`` (exit 2) naming the file, the table and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from relaybench.errors import UsageError
from relaybench.records import ERROR_TYPES, PERCENTILES, STAT_KEYS
from relaybench.scrape.usage import FIELDS as SERVER_FIELDS

DISTRIBUTIONS = ("ttft_ms", "itl_ms", "e2e_ms", "first_token_lag_ms", "chunk_lag_ms")
SCALARS = ("requests", "ok", "error_rate", "output_tokens", "output_tokens_per_s", "requests_per_s")
# in summary.json only for runs with a client retry policy (reports.traffic)
RETRY_SCALARS = ("retry_amplification", "user_error_rate", "attempt_error_rate")

TARGET_METRICS: tuple[str, ...] = (
    *SCALARS,
    *RETRY_SCALARS,
    *(f"errors.{kind}" for kind in ERROR_TYPES),
    *(f"{dist}.{stat}" for dist in DISTRIBUTIONS for stat in STAT_KEYS),
)

DERIVED_STATS = ("mean", *PERCENTILES)
DERIVED_FAMILIES = {
    "relay_added_ttft_ms": "relay ttft_ms minus direct ttft_ms (same statistic)",
    "relay_added_first_token_lag_ms": "relay first_token_lag_ms minus direct's",
    "relay_added_chunk_lag_ms": "relay chunk_lag_ms minus direct chunk_lag_ms",
    "streaming_ttft_reduction_pct": "100 * (1 - relay ttft_ms / relay-buffered ttft_ms)",
}
DERIVED_SCALARS = {
    "goodput_pct": "% of the relay's requests that are ok and within slo_ttft_ms (and slo_e2e_ms)",
}
DERIVED_METRICS: tuple[str, ...] = (
    *(f"{family}.{stat}" for family in DERIVED_FAMILIES for stat in DERIVED_STATS),
    *DERIVED_SCALARS,
)

DERIVED_TABLE = "derived"
_SETTING_TARGETS = ("direct_target", "relay_target", "buffered_target")
_SETTING_NUMBERS = ("slo_ttft_ms", "slo_e2e_ms")

_LIMIT = re.compile(r"^(?P<op><=|>=)\s*(?P<num>(?P<sign>[+-]?)[^\s%]+)\s*(?P<pct>%?)$")
# metrics that are a fraction 0..1: an unsigned percent on them means that fraction
FRACTION_METRICS = ("error_rate", "user_error_rate", "attempt_error_rate")


def server_metric(key: str) -> tuple[str, str] | None:
    """``server.SERVER.FIELD`` as (SERVER, FIELD); None for any other key (names may hold dots)."""
    if not key.startswith("server."):
        return None
    server, _, name = key.removeprefix("server.").rpartition(".")
    return (server, name) if server and name in SERVER_FIELDS else None


@dataclass(frozen=True)
class Check:
    """One limit: ``metric`` of ``target`` (or of the run, for ``target == "derived"``)."""

    target: str
    metric: str
    op: str  # "<=" or ">="
    value: float  # the limit; for a relative check, the tolerated change as a fraction
    relative: bool
    text: str  # the limit as written, e.g. "<= +10%"

    @property
    def derived(self) -> bool:
        return self.target == DERIVED_TABLE


@dataclass(frozen=True)
class DerivedSettings:
    """Which targets play which role, and the SLO behind ``goodput_pct``."""

    direct_target: str = "direct"
    relay_target: str = "relay"
    buffered_target: str = "relay-buffered"
    slo_ttft_ms: float | None = None
    slo_e2e_ms: float | None = None


@dataclass(frozen=True)
class Thresholds:
    path: Path
    checks: list[Check]
    derived: DerivedSettings = field(default_factory=DerivedSettings)

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys(c.target for c in self.checks if not c.derived))

    @property
    def needs_baseline(self) -> bool:
        return any(c.relative for c in self.checks)


def load_thresholds(path: Path | str) -> Thresholds:
    """Read and validate a thresholds file; any problem is a UsageError naming file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read thresholds file {path}: {exc.strerror or exc}") from exc
    return parse_thresholds(text, path)


def parse_thresholds(text: str, path: Path | str = "<thresholds>") -> Thresholds:
    path = Path(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from exc
    checks: list[Check] = []
    settings = DerivedSettings()
    for table, entries in doc.items():
        if not isinstance(entries, dict):
            raise UsageError(
                f"{path}: top-level key {table!r} is not a table; write one [TARGET] table per "
                f"target and a [{DERIVED_TABLE}] table for cross-target metrics"
            )
        if table == DERIVED_TABLE:
            settings, derived_checks = _parse_derived(path, entries)
            checks += derived_checks
        else:
            _refuse_nested(path, table, entries)
            for key, value in entries.items():
                if f"{table}.{key}" in TARGET_METRICS:
                    raise UsageError(
                        f"{path}: {table}.{key} outside any [TARGET] table: TOML read the "
                        f"unquoted dotted key as table [{table}]; put it under its target's "
                        f'table and quote it: [relay] "{table}.{key}" = {_toml_value(value)}'
                    )
                checks += [
                    _parse_check(path, table, key, v, TARGET_METRICS) for v in _limits(value)
                ]
    if not checks:
        raise UsageError(f'{path}: no checks (expected e.g. [relay] "ttft_ms.p95" = "<= 800")')
    return Thresholds(path=path, checks=checks, derived=settings)


def _parse_derived(path: Path, entries: dict) -> tuple[DerivedSettings, list[Check]]:
    values: dict[str, object] = {}
    checks: list[Check] = []
    _refuse_nested(path, DERIVED_TABLE, entries)
    for key, value in entries.items():
        if key in _SETTING_TARGETS:
            if not isinstance(value, str) or not value:
                raise UsageError(f"{path}: [{DERIVED_TABLE}] {key} must be a target name string")
            values[key] = value
        elif key in _SETTING_NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise UsageError(
                    f"{path}: [{DERIVED_TABLE}] {key} must be a positive number of ms, "
                    f"got {value!r}"
                )
            values[key] = float(value)
        else:
            for limit in _limits(value):
                check = _parse_check(path, DERIVED_TABLE, key, limit, DERIVED_METRICS)
                if check.relative:
                    raise UsageError(
                        f"{path}: [{DERIVED_TABLE}] {key!r} = {limit!r}: derived metrics take "
                        "absolute limits only (they already compare targets of the same run)"
                    )
                checks.append(check)
    settings = DerivedSettings(**values)  # type: ignore[arg-type]
    if any(c.metric == "goodput_pct" for c in checks) and settings.slo_ttft_ms is None:
        raise UsageError(
            f"{path}: [{DERIVED_TABLE}] goodput_pct needs the SLO: add slo_ttft_ms = <ms> "
            "(and optionally slo_e2e_ms) to the same table"
        )
    return settings, checks


def _refuse_nested(path: Path, table: str, entries: dict) -> None:
    """TOML reads an unquoted dotted key (``ttft_ms.p95 = ...``) as nested tables: say so."""
    leaves = [leaf for key, value in entries.items() if isinstance(value, dict)
              for leaf in _flatten(key, value)]  # fmt: skip
    if not leaves:
        return
    quoted = "; ".join(f'"{dotted}" = {_toml_value(leaf)}' for dotted, leaf in leaves)
    raise UsageError(
        f"{path}: [{table}] {', '.join(d for d, _ in leaves)}: TOML reads an unquoted dotted key "
        f"as nested tables, so the metric name is lost; quote the key: {quoted}"
    )


def _flatten(prefix: str, value: object):
    if isinstance(value, dict):
        for part, inner in value.items():
            yield from _flatten(f"{prefix}.{part}", inner)
    else:
        yield prefix, value


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


def _limits(value: object) -> list[object]:
    """A key holds one limit, or a list of them (an absolute ceiling and a relative limit)."""
    return list(value) if isinstance(value, list) and value else [value]


def _parse_check(path: Path, table: str, key: str, value: object, known: tuple[str, ...]) -> Check:
    where = f"{path}: [{table}] {key!r}"
    if key not in known and (table == DERIVED_TABLE or server_metric(key) is None):
        settings = f" (settings: {', '.join(_SETTING_TARGETS + _SETTING_NUMBERS)})"
        servers = f", server.SERVER.FIELD with FIELD one of {', '.join(SERVER_FIELDS)}"
        raise UsageError(
            f"{where}: unknown metric; known metrics: {', '.join(known)}"
            + (settings if table == DERIVED_TABLE else servers)
        )
    if not isinstance(value, str):
        raise UsageError(
            f'{where}: the limit must be a string such as "<= 800" or "<= +10%" '
            "(or a list of such strings)"
        )
    match = _LIMIT.match(value.strip())
    if match is None:
        raise UsageError(
            f"{where} = {value!r}: bad limit; expected an operator <= or >= and a number, "
            'e.g. "<= 800", ">= 200", "<= +10%", ">= -5%"'
        )
    try:
        number = float(match["num"])
    except ValueError:
        raise UsageError(f"{where} = {value!r}: {match['num']!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise UsageError(f"{where} = {value!r}: the limit must be a finite number")
    percent, relative = bool(match["pct"]), bool(match["pct"] and match["sign"])
    if percent and not relative:
        number = _absolute_percent(where, value, key, number)
    return Check(
        target=table,
        metric=key,
        op=match["op"],
        value=number / 100.0 if relative else number,
        relative=relative,
        text=value.strip(),
    )


def _absolute_percent(where: str, value: str, key: str, number: float) -> float:
    """An unsigned percent: a fraction on ``error_rate``, the number itself on ``*_pct``."""
    if key in FRACTION_METRICS:
        return number / 100.0
    if key.split(".", 1)[0].endswith("_pct") or key.endswith("_pct"):
        return number
    signed = value.strip().replace(" ", "")
    signed = signed[:2] + " +" + signed[2:]
    raise UsageError(
        f"{where} = {value!r}: an unsigned percent is an absolute limit, and {key} is not a "
        f"fraction or a percentage; for a change relative to --baseline write the sign: "
        f"{signed!r} (or give the limit in {key}'s own unit)"
    )
