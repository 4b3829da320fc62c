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

A limit is a string ``"<OP> <NUMBER>"`` with OP ``<=`` or ``>=``; a trailing ``%`` makes it
relative (``"<= +10%"``: at most 10 % above the baseline; ``">= -5%"``: at most 5 % below).
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

_LIMIT = re.compile(r"^(?P<op><=|>=)\s*(?P<num>\S+?)\s*(?P<pct>%?)$")


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
            for key, value in entries.items():
                checks += [
                    _parse_check(path, table, key, v, TARGET_METRICS) for v in _limits(value)
                ]
    if not checks:
        raise UsageError(f'{path}: no checks (expected e.g. [relay] "ttft_ms.p95" = "<= 800")')
    return Thresholds(path=path, checks=checks, derived=settings)


def _parse_derived(path: Path, entries: dict) -> tuple[DerivedSettings, list[Check]]:
    values: dict[str, object] = {}
    checks: list[Check] = []
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


def _limits(value: object) -> list[object]:
    """A key holds one limit, or a list of them (an absolute ceiling and a relative limit)."""
    return list(value) if isinstance(value, list) and value else [value]


def _parse_check(path: Path, table: str, key: str, value: object, known: tuple[str, ...]) -> Check:
    where = f"{path}: [{table}] {key!r}"
    if key not in known:
        settings = f" (settings: {', '.join(_SETTING_TARGETS + _SETTING_NUMBERS)})"
        raise UsageError(
            f"{where}: unknown metric; known metrics: {', '.join(known)}"
            + (settings if table == DERIVED_TABLE else "")
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
    relative = bool(match["pct"])
    return Check(
        target=table,
        metric=key,
        op=match["op"],
        value=number / 100.0 if relative else number,
        relative=relative,
        text=value.strip(),
    )
