"""A run's lag compared with the harness's calibrated floor (``relaybench calibrate``).

``relaybench run --calibration FILE`` stores the calibration in ``run.json``. Its ``floor`` holds,
per concurrency level, the first-token and chunk lag the harness measured against a bare mock:
its own measurement error at that load. For each target with emission stamps this module puts
the run's lag beside the floor of the smallest calibrated level at or above the run's users
(the floor grows with load, so this errs towards forgiving the harness), and the excess:

- on ``direct`` the excess should be about zero; a large one means the harness did worse than
  when it was calibrated (a busier machine, another load), so the run's small numbers are suspect;
- through a relay the excess is the relay's added latency plus whatever the harness lost.
"""

from __future__ import annotations

QUANTILES = ("p50", "p99")
METRICS = ("first_token_lag_ms", "chunk_lag_ms")


def floor_level(floor: dict, users: int) -> tuple[int, bool] | None:
    """The calibrated level to compare with, and whether ``users`` lies inside the range."""
    levels = sorted(int(k) for k in floor if str(k).isdigit())
    if not levels:
        return None
    above = [level for level in levels if level >= users]
    return (above[0], True) if above else (levels[-1], False)


def compare(meta: dict, targets: dict) -> dict | None:
    """The summary's ``calibration`` block, or None when the run carries no calibration."""
    calibration = meta.get("calibration")
    if not isinstance(calibration, dict) or not isinstance(calibration.get("floor"), dict):
        return None
    users = int(meta.get("users") or 1) * int((meta.get("environment") or {}).get("processes") or 1)
    chosen = floor_level(calibration["floor"], users)
    if chosen is None:
        return None
    level, in_range = chosen
    floor = calibration["floor"][str(level)]
    rows: dict[str, dict] = {}
    for name, target in targets.items():
        metrics = {}
        for metric in METRICS:
            measured, base = target.get(metric), floor.get(metric)
            if not measured or not base:
                continue
            metrics[metric] = {
                q: {
                    "run": measured.get(q),
                    "floor": base.get(q),
                    "excess": _diff(measured.get(q), base.get(q)),
                }
                for q in QUANTILES
            }
        if metrics:
            rows[name] = metrics
    return {
        "created_at": calibration.get("created_at"),
        "level": level,
        "users": users,
        "in_range": in_range,
        "targets": rows,
    }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)
