"""What each server used during one target's window: the ``server`` block of ``summary.json``.

Per server (``relay``, ``mock``, a ``--scrape`` name), from its process samples (``.process``)
or, when the harness has no PID for it, from the standard ``process_*`` metrics a
``prometheus_client`` exporter publishes (``process_cpu_seconds_total``,
``process_resident_memory_bytes``, ``process_open_fds``):

- ``peak_cpu_pct`` / ``mean_cpu_pct`` (100 = one core) over the samples in the window;
- ``cpu_s``: CPU seconds spent in the window (the last sample in it minus the last one before
  it; to within one sampling interval), and that per request and per 1,000 chunks;
- ``peak_rss_mb``, ``rss_mb_start`` → ``rss_mb_end``, ``fds_start`` → ``fds_end``,
  ``threads_max``; ``samples`` and ``gaps`` (failed polls) in the window.

Values that the samples cannot give are ``None``; a server without any sample or gap in the
window is left out (one whose every poll failed is kept: ``samples`` 0 and its ``gaps``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from relaybench.scrape.samples import SourceSamples

# the block's numbers, in the order ``server_block`` writes them (the gate's ``server.*`` paths)
FIELDS = (
    "samples",
    "gaps",
    "peak_cpu_pct",
    "mean_cpu_pct",
    "cpu_s",
    "peak_rss_mb",
    "rss_mb_start",
    "rss_mb_end",
    "fds_start",
    "fds_end",
    "threads_max",
    "cpu_s_per_request",
    "cpu_s_per_1k_chunks",
)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _first_last(values: np.ndarray) -> tuple[float | None, float | None]:
    return (float(values[0]), float(values[-1])) if values.size else (None, None)


def _from_process(src: SourceSamples, started_ns: int, ended_ns: int) -> dict[str, Any]:
    inside = src.between(started_ns, ended_ns)
    _, cpu = inside.series("gauges", "cpu_pct")
    _, rss = inside.series("gauges", "rss_mb")
    _, fds = inside.series("gauges", "fds")
    _, threads = inside.series("gauges", "threads")
    t_all, total = src.series("gauges", "cpu_s")
    cpu_s = None
    window = (t_all >= started_ns) & (t_all <= ended_ns)
    if window.any():
        last = total[window][-1]
        before = total[t_all < started_ns]
        cpu_s = last - (before[-1] if before.size else total[window][0])
    return _block(inside, cpu, cpu_s, rss, fds, threads)


def _from_metrics(src: SourceSamples, started_ns: int, ended_ns: int) -> dict[str, Any] | None:
    inside = src.between(started_ns, ended_ns)
    _, rate = inside.series("rates", "process_cpu_seconds_total")
    if not rate.size and not inside.gaps:
        return None  # nothing in the window, or a server that exports no process_* metrics
    spans = np.array(
        [r.get("interval_s", 0.0) for r in inside.rows if "process_cpu_seconds_total" in
         (r.get("rates") or {})], dtype=np.float64,
    )  # fmt: skip
    _, rss = inside.series("gauges", "process_resident_memory_bytes")
    _, fds = inside.series("gauges", "process_open_fds")
    cpu_s = float(np.sum(rate * spans)) if rate.size else None
    return _block(inside, rate * 100.0, cpu_s, rss / 2**20, fds, np.empty(0))


def _block(
    inside: SourceSamples,
    cpu: np.ndarray,
    cpu_s: float | None,
    rss: np.ndarray,
    fds: np.ndarray,
    threads: np.ndarray,
) -> dict[str, Any]:
    rss_start, rss_end = _first_last(rss)
    fds_start, fds_end = _first_last(fds)
    return {
        "source": inside.name,
        "samples": len(inside.rows),
        "gaps": len(inside.gaps),
        "peak_cpu_pct": _round(cpu.max() if cpu.size else None, 1),
        "mean_cpu_pct": _round(cpu.mean() if cpu.size else None, 1),
        "cpu_s": _round(cpu_s, 4),
        "peak_rss_mb": _round(rss.max() if rss.size else None, 1),
        "rss_mb_start": _round(rss_start, 1),
        "rss_mb_end": _round(rss_end, 1),
        "fds_start": None if fds_start is None else int(fds_start),
        "fds_end": None if fds_end is None else int(fds_end),
        "threads_max": int(threads.max()) if threads.size else None,
    }


def server_block(
    sources: dict[str, SourceSamples],
    started_ns: int,
    ended_ns: int,
    requests: int,
    chunks: int,
) -> dict[str, dict[str, Any]]:
    """One entry per server with samples or gaps in ``[started_ns, ended_ns]`` (the module doc)."""
    servers: dict[str, dict[str, SourceSamples]] = {}
    for src in sources.values():
        servers.setdefault(src.server, {})[src.kind] = src
    out: dict[str, dict[str, Any]] = {}
    for server, kinds in sorted(servers.items()):
        block = None
        if "process" in kinds:
            block = _from_process(kinds["process"], started_ns, ended_ns)
            if not block["samples"] and not block["gaps"]:
                block = None
        if block is None and "metrics" in kinds:
            block = _from_metrics(kinds["metrics"], started_ns, ended_ns)
        if block is None:
            continue
        cpu_s = block["cpu_s"]
        measured = cpu_s is not None  # 0.0 CPU seconds is a measurement: 0.0 per request
        block["cpu_s_per_request"] = _round(cpu_s / requests, 6) if measured and requests else None
        block["cpu_s_per_1k_chunks"] = (
            _round(1000 * cpu_s / chunks, 6) if measured and chunks else None
        )
        out[server] = block
    return out
