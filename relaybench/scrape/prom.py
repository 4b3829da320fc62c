"""Prometheus text → one snapshot per scrape → per-interval values between two snapshots.

Parsing is ``prometheus_client``'s own parser. Between two snapshots ``interval`` gives:

- ``gauges``: gauges (and untyped samples, and a summary's quantiles) as they were scraped;
- ``rates``: counters (and a histogram's or summary's ``_count``) as increase per second; a
  counter that went down was reset (a restart), so its increase is its new value, as in
  Prometheus's ``rate()``;
- ``quantiles``: each histogram's p50/p95/p99 over *this interval only*, from the difference of
  its cumulative buckets, interpolated inside the bucket as ``histogram_quantile`` does (so no
  finer than the buckets), plus ``count`` and the exact ``mean`` (from ``_sum``) of the
  interval's observations. No observation → no quantile.

Series keys are the sample name with its labels, sorted: ``relay_requests_total{route="/v1",
status="200"}``; a histogram's key has no ``le``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
REASON_MAX = 200  # characters of a server's text kept in a gap's reason


def clip(text: str, limit: int = REASON_MAX) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis: a reason built from what a server
    sent (a parser's message quotes the offending line, which can be a whole HTML page) goes into
    every gap line, the warning, the notes and the reports."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NotPrometheus(ValueError):
    """The body is not Prometheus text (or holds no metric at all)."""


@dataclass
class Histogram:
    bounds: np.ndarray  # upper bounds, ascending, the last one +Inf
    cumulative: np.ndarray  # observations <= each bound
    sum: float  # ``_sum``; the count is the +Inf bucket


@dataclass
class Snapshot:
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)


def series_key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def parse(text: str) -> Snapshot:
    """One scrape's body → a snapshot. Raises ``NotPrometheus`` with the parser's reason."""
    snap = Snapshot()
    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as exc:
        raise NotPrometheus(f"not Prometheus text ({clip(str(exc))})") from None
    if not families:
        raise NotPrometheus("no metric in the answer")
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_created") or not math.isfinite(sample.value):
                continue  # creation times are not values; NaN/Inf cannot be charted
            labels = dict(sample.labels)
            value = float(sample.value)
            if family.type == "counter":
                snap.counters[series_key(sample.name, labels)] = value
            elif family.type in ("gauge", "unknown", "untyped"):
                snap.gauges[series_key(sample.name, labels)] = value
            elif family.type == "summary":
                if sample.name.endswith(("_count", "_sum")):
                    snap.counters[series_key(sample.name, labels)] = value
                else:
                    snap.gauges[series_key(sample.name, labels)] = value
            elif family.type == "histogram":
                _histogram_sample(family.name, sample.name, labels, value, buckets, sums)
            # info, stateset, gaugehistogram: nothing a run's timeline needs
    for key, pairs in buckets.items():
        pairs.sort()
        bounds = np.array([b for b, _ in pairs], dtype=np.float64)
        cumulative = np.array([c for _, c in pairs], dtype=np.float64)
        if bounds.size and bounds[-1] == math.inf:
            snap.histograms[key] = Histogram(bounds, cumulative, sums.get(key, 0.0))
    return snap


def _histogram_sample(
    family: str,
    name: str,
    labels: dict[str, str],
    value: float,
    buckets: dict[str, list[tuple[float, float]]],
    sums: dict[str, float],
) -> None:
    if name == f"{family}_bucket" and "le" in labels:
        try:
            bound = float(labels.pop("le"))
        except ValueError:
            raise NotPrometheus(f"not Prometheus text (bucket bound le of {name})") from None
        buckets.setdefault(series_key(family, labels), []).append((bound, value))
    elif name == f"{family}_sum":
        sums[series_key(family, labels)] = value


def _increase(before: float | None, now: float) -> float:
    if before is None or now < before:  # new series, or a reset: it counted from zero
        return now
    return now - before


def bucket_quantile(q: float, bounds: np.ndarray, cumulative: np.ndarray) -> float | None:
    """The q-quantile of observations given cumulative bucket counts (``histogram_quantile``).

    Linear inside the bucket holding rank ``q * total``; the first bucket starts at 0 (or at its
    own bound when that is negative); a rank in the ``+Inf`` bucket answers the highest finite
    bound, since nothing more is known.
    """
    total = float(cumulative[-1]) if cumulative.size else 0.0
    if total <= 0:
        return None
    rank = q * total
    i = int(np.searchsorted(cumulative, rank, side="left"))
    i = min(i, cumulative.size - 1)
    if bounds[i] == math.inf:
        finite = bounds[np.isfinite(bounds)]
        return float(finite[-1]) if finite.size else None
    upper = float(bounds[i])
    lower = float(bounds[i - 1]) if i > 0 else min(0.0, upper)
    below = float(cumulative[i - 1]) if i > 0 else 0.0
    inside = float(cumulative[i]) - below
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / inside


def interval(before: Snapshot | None, now: Snapshot, seconds: float) -> dict[str, dict]:
    """The per-interval values between two snapshots ``seconds`` apart (see the module doc)."""
    out: dict[str, dict] = {"gauges": dict(now.gauges), "rates": {}, "quantiles": {}}
    if before is None or seconds <= 0:
        return out
    for key, value in now.counters.items():
        out["rates"][key] = _increase(before.counters.get(key), value) / seconds
    for key, hist in now.histograms.items():
        previous = before.histograms.get(key)
        delta, total = hist.cumulative, hist.sum
        if previous is not None and np.array_equal(previous.bounds, hist.bounds):
            diff = hist.cumulative - previous.cumulative
            if not (diff < 0).any():  # a reset shows as a drop: then the new counts are all new
                delta, total = diff, hist.sum - previous.sum
        count = float(delta[-1]) if delta.size else 0.0
        block: dict[str, float | None] = {"count": count, "mean": total / count if count else None}
        for label, q in QUANTILES.items():
            block[label] = bucket_quantile(q, hist.bounds, delta)
        out["quantiles"][key] = block
        out["rates"][f"{key}_count"] = count / seconds
    return out
