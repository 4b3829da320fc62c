"""Capacity planning from a ``step`` (or sweep) run: how much load one deployment carries.

- **Highest load meeting the SLOs**: walking the steps from the lightest, the last step whose
  TTFT p95 and error rate are both within the SLOs (a step after the first failure never counts).
  Its uncertainty comes from the 95% bootstrap interval of each step's p95: the *confident*
  load is the last step whose whole interval is under the SLO, the *plausible* load the last
  one whose interval reaches under it; ``crossing`` interpolates where p95 meets the SLO.
- **Knee**: where TTFT p95 bends upwards (Kneedle: the step farthest above the chord of the
  normalised latency curve); none when the curve stays within 25% of its start.
- **Replicas** for a target peak: ``ceil(peak / (capacity * (1 - headroom)))``, with capacity =
  the highest successful req/s among the SLO-meeting steps (past the knee throughput can fall
  while latency still meets the SLO, so the heaviest step is not always the most productive).
  The plan says where its peak came from (``replicas.source``): ``given`` (``--peak-rps``),
  ``reference`` (a multiple of a named reference: a trace's busiest minute, the load a search
  found), or ``run`` (a multiple of the run's own highest 10-second mean req/s — the benchmark's
  offered load, not anyone's traffic, and labelled so). When every step met the SLOs the
  capacity is only a lower bound, so the replica count is an upper bound (``bound: at_most``).
  ``--replica-cost`` adds infrastructure cost per replica-month; the relay's CPU and RSS per
  replica come from the run's server samples (``summary.json`` ``server``) when it has them.
- **Honesty flags** (``flags``, printed before anything else): steps shorter than
  ``SHORT_STEP_E2E`` mean E2E times never reach a steady state (Little's law), so a capacity
  measured on them is not a steady-state figure; a bound is said to be a bound.
- **Little's law** (closed loop, no think time): users ≈ req/s × mean end-to-end time per step;
  a ratio far from 1 means lost requests, think time, or a clock problem.
- **Cost** per day and month from ``prices.toml`` (editable): requests/day = peak × ``load_factor``
  (the day's mean traffic as a share of its peak) × 86,400; output tokens per request measured,
  input tokens per request given.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from relaybench.errors import UsageError

PRICES = Path(__file__).with_name("prices.toml")
DEFAULT_INPUT_TOKENS = 500  # prompt tokens per request when neither given nor measured
SHORT_STEP_E2E = 3.0  # a step shorter than this many mean E2E times never reaches steady state


@dataclass(frozen=True)
class PlanInput:
    slo_ttft_p95_ms: float = 1000.0
    slo_error_rate: float = 0.01
    peak_rps: float | None = None
    peak_multiple: float | None = None
    headroom: float = 0.3
    # prompt tokens per request; None: the records' measured prompts, else DEFAULT_INPUT_TOKENS
    input_tokens: int | None = None
    load_factor: float = 0.35
    prices: Path = PRICES
    target: str | None = None
    replica_cost: float | None = None  # infrastructure cost per replica-month (USD)
    reference_rps: float | None = None  # what --peak-multiple multiplies, when not the run's own
    reference_label: str | None = None  # e.g. "the trace's busiest minute"
    reference_own: bool = False  # the reference is the measurement's own load, not traffic


def load_prices(path: Path) -> dict:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read the price table {path}: {exc}") from exc
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise UsageError(f'the price table {path} has no [models."NAME"] tables')
    for name, model in models.items():
        for key in ("direct_input", "direct_output", "relay_input", "relay_output"):
            if not isinstance(model.get(key), int | float):
                raise UsageError(f"price table {path}: model {name!r} lacks a number for {key}")
    return data


def kneedle(x: np.ndarray, y: np.ndarray) -> float | None:
    """The x where an increasing, convex curve bends: max of (x_norm - y_norm)."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or y.min() <= 0 or y.max() / y.min() < 1.25:
        return None
    order = np.argsort(x)
    x, y = x[order], y[order]
    xn = (x - x[0]) / (x[-1] - x[0]) if x[-1] > x[0] else np.zeros_like(x)
    yn = (y - y.min()) / (y.max() - y.min())
    gap = xn - yn
    i = int(np.argmax(gap))
    return float(x[i]) if 0 < i < x.size - 1 and gap[i] > 0 else None


def choose_target(names: list[str], wanted: str | None) -> str:
    if wanted:
        if wanted not in names:
            raise UsageError(f"target {wanted!r} is not in this run (targets: {', '.join(names)})")
        return wanted
    for name in ("relay", "direct"):
        if name in names:
            return name
    return names[0]


def today_peak_rps(series: pd.DataFrame, target: str) -> float | None:
    rows = series[series["target"] == target] if len(series) else series
    if not len(rows):
        return None
    rolling = rows["requests"].rolling(10, min_periods=1).mean()
    return float(rolling.max())


def plan(
    steps: pd.DataFrame,
    series: pd.DataFrame,
    inp: PlanInput,
    *,
    names: list[str],
    open_loop: bool = False,
    mean_output_tokens: float | None = None,
    mean_input_tokens: float | None = None,
    axis: tuple[str, str] | None = None,
    servers: dict[str, dict | None] | None = None,
) -> dict:
    """The capacity plan as a JSON-able dict (see the module docstring for each number).

    ``axis`` is ``(column, unit)`` of the load when it is neither users nor an asked rate (a
    search along a trace's rate scale); ``steps`` may carry ``meets`` (a verdict decided
    elsewhere, e.g. a search's, with its intervals) instead of the point-estimate rule.
    ``servers`` maps each relay target to its ``summary.json`` ``server`` block (where it has
    one): the relay's CPU and RSS per replica. ``mean_input_tokens`` is the records' measured
    prompt size (trace replay and chat record it), used when ``inp.input_tokens`` is None."""
    target = choose_target(names, inp.target)
    load, unit = axis or (("rate", "req/s asked") if open_loop else ("users", "users"))
    out: dict = {
        "target": target,
        "load_axis": load,
        "load_unit": unit,
        "slo": {"ttft_ms_p95": inp.slo_ttft_p95_ms, "error_rate": inp.slo_error_rate},
        "notes": [],
        "flags": [],
    }
    rows = steps[steps["target"] == target].sort_values(load) if len(steps) else steps
    if not len(rows):
        out["notes"].append(
            "This run has no steps, so the highest load meeting the SLOs cannot be found; run "
            "the `step` scenario (relaybench run --scenario step) for a capacity plan."
        )
        out["capacity"] = None
    else:
        out.update(_capacity(rows, inp, load))
    cap = out.get("capacity") or {}
    out["replicas"] = _replicas(series, target, cap, inp, out["notes"])
    out["littles_law"] = None if open_loop or load != "users" else _littles_law(rows)
    out["flags"] = _flags(out, unit)
    out["resources"] = _resources((servers or {}).get(target), out["replicas"])
    if (
        target in (servers or {})
        and not out["resources"]
        and (out["replicas"] or {}).get("replicas")
    ):
        out["notes"].append(
            "No server samples of the relay in this folder, so its CPU and memory per replica "
            "are unknown (relaybench run and search sample the relay they start)."
        )
    out["cost"] = _cost(out["replicas"], inp, mean_output_tokens, mean_input_tokens)
    return out


def _flags(out: dict, unit: str) -> list[str]:
    """What the reader must know before reading any number of the plan."""
    flags = []
    short = [s for s in out.get("steps") or [] if s.get("short") and s["meets_slo"]]
    if short:
        worst = min(short, key=lambda s: s["seconds"] / s["e2e_mean_s"])
        flags.append(
            f"Not a steady-state figure: {len(short)} SLO-meeting step(s) lasted less than "
            f"{SHORT_STEP_E2E:g} mean request times (e.g. {worst['seconds']:g} s against a mean "
            f"E2E of {worst['e2e_mean_s']:.1f} s); by Little's law the load had not settled when "
            f"they ended. Run steps of at least "
            f"{math.ceil(SHORT_STEP_E2E * max(s['e2e_mean_s'] for s in short))} s."
        )
    cap = out.get("capacity") or {}
    rep = out.get("replicas") or {}
    if cap.get("limited_by_last_step"):
        n = rep.get("replicas")
        flags.append(
            f"A bound, not a measurement: every step met the SLOs, so one replica carries at "
            f"least {cap[out['load_axis']]:g} {unit}"
            + (f" and the peak needs **at most {n} replica(s)**" if n else "")
            + "; measure heavier loads to find the real limit (heavier steps, or a search "
            "with a higher --start or more --max-probes)."
        )
    if rep.get("source") == "run":
        flags.append(
            f"The peak ({rep['peak_rps']:,.1f} req/s) is a multiple of the measurement's own "
            "load, which the benchmark chose, not your traffic's peak: give --peak-rps with "
            "your real peak."
        )
    return flags


def _resources(server: dict | None, replicas: dict | None) -> dict | None:
    """The relay's CPU and RSS per replica over the measured window, from server samples."""
    if not isinstance(server, dict):
        return None
    block = server.get("relay")
    if not isinstance(block, dict):
        return None
    out = {
        "server": "relay",
        "mean_cpu_pct": block.get("mean_cpu_pct"),
        "peak_cpu_pct": block.get("peak_cpu_pct"),
        "peak_rss_mb": block.get("peak_rss_mb"),
        "samples": block.get("samples"),
    }
    n = (replicas or {}).get("replicas")
    if n and isinstance(out["peak_rss_mb"], int | float):
        out["fleet_rss_mb"] = round(n * out["peak_rss_mb"], 1)
    if n and isinstance(out["mean_cpu_pct"], int | float):
        out["fleet_cores"] = round(n * out["mean_cpu_pct"] / 100, 2)
    return out


def _capacity(rows: pd.DataFrame, inp: PlanInput, load: str) -> dict:
    p95 = rows["ttft_p95"].to_numpy(dtype=float)
    if "meets" in rows:
        meets = rows["meets"].to_numpy(dtype=bool)
    else:
        errors = rows["error_rate"].to_numpy()
        meets = (p95 <= inp.slo_ttft_p95_ms) & (errors <= inp.slo_error_rate)
    prefix = np.cumprod(meets).astype(bool)  # nothing after the first failure counts
    x = rows[load].to_numpy(dtype=float)
    knee = kneedle(x, p95)
    table = [
        {
            "step": int(r.step),
            load: float(getattr(r, load)),
            "rps": round(float(r.rps), 3),
            "ok_rps": round(float(r.ok_rps), 3),
            "tokens_per_s": round(float(r.tokens_per_s), 1),
            "ttft_p50": _r(r.ttft_p50),
            "ttft_p95": _r(r.ttft_p95),
            "ttft_p95_ci": [_r(r.ttft_p95_low), _r(r.ttft_p95_high)],
            "error_rate": round(float(r.error_rate), 5),
            "meets_slo": bool(m),
            "seconds": round(float(r.seconds), 3),
            "e2e_mean_s": _r(r.e2e_mean_ms / 1000, 3),
            "short": bool(r.seconds < SHORT_STEP_E2E * r.e2e_mean_ms / 1000),
        }
        for r, m in zip(rows.itertuples(), prefix, strict=True)
    ]
    out: dict = {"steps": table, "knee": knee}
    if not prefix.any():
        out["capacity"] = None
        out["notes"] = [
            f"Even the lightest step ({x[0]:,g} {load}) misses the SLOs "
            f"(TTFT p95 {p95[0]:,.0f} ms, error rate {rows['error_rate'].iloc[0]:.2%})."
        ]
        return out
    best = int(np.flatnonzero(prefix)[-1])
    low = rows["ttft_p95_low"].to_numpy(dtype=float)
    high = rows["ttft_p95_high"].to_numpy(dtype=float)
    errors_ok = rows["error_rate"].to_numpy() <= inp.slo_error_rate
    if "meets" in rows:  # the verdict already weighed each interval
        confident = plausible = prefix
    else:
        confident = np.cumprod((high <= inp.slo_ttft_p95_ms) & errors_ok).astype(bool)
        plausible = np.cumprod((low <= inp.slo_ttft_p95_ms) & errors_ok).astype(bool)
    r = rows.iloc[best]
    meeting = np.flatnonzero(prefix)
    top = rows.iloc[int(meeting[np.argmax(rows["ok_rps"].to_numpy()[meeting])])]
    capacity = {
        load: float(r[load]),
        "ttft_p95": _r(r["ttft_p95"]),
        # throughput can peak before the last SLO-meeting step (past the knee it may fall)
        "rps": round(float(top["rps"]), 3),
        "ok_rps": round(float(top["ok_rps"]), 3),
        "tokens_per_s": round(float(top["tokens_per_s"]), 1),
        f"{load}_at_max_throughput": float(top[load]),
        f"{load}_confident": float(x[np.flatnonzero(confident)[-1]]) if confident.any() else None,
        f"{load}_plausible": float(x[np.flatnonzero(plausible)[-1]]),
        "limited_by_last_step": best == len(rows) - 1,
    }
    if best + 1 < len(rows) and p95[best + 1] > p95[best]:
        frac = (inp.slo_ttft_p95_ms - p95[best]) / (p95[best + 1] - p95[best])
        capacity[f"{load}_crossing"] = round(float(x[best] + frac * (x[best + 1] - x[best])), 1)
    # every step meeting the SLOs makes the capacity a lower bound: said first, in ``flags``
    return {"steps": table, "knee": knee, "capacity": capacity, "notes": []}


def _replicas(
    series: pd.DataFrame, target: str, cap: dict, inp: PlanInput, notes: list[str]
) -> dict | None:
    today = today_peak_rps(series, target)
    if inp.peak_rps is not None:
        peak, source = inp.peak_rps, "given"
        basis = f"the given peak of {inp.peak_rps:,.1f} req/s (--peak-rps)"
    elif inp.peak_multiple is not None and inp.reference_rps:
        peak = inp.peak_multiple * inp.reference_rps
        source = "run" if inp.reference_own else "reference"
        basis = (f"{inp.peak_multiple:g}× {inp.reference_label or 'the reference load'} "
                 f"({inp.reference_rps:,.1f} req/s)")  # fmt: skip
    elif inp.peak_multiple is not None and today:
        peak, source = inp.peak_multiple * today, "run"
        basis = (f"{inp.peak_multiple:g}× this run's own busiest 10 s ({today:,.1f} req/s, the "
                 "benchmark's offered load)")  # fmt: skip
    else:
        return None
    out = {"peak_rps": round(peak, 3), "basis": basis, "source": source,
           "headroom": inp.headroom, "today": today, "bound": None}  # fmt: skip
    capacity = cap.get("ok_rps")
    if not capacity:
        notes.append("No SLO-meeting capacity was measured, so replicas cannot be computed.")
        out["replicas"] = None
        return out
    usable = capacity * (1 - inp.headroom)
    out["per_replica_rps"] = round(capacity, 3)
    out["usable_per_replica_rps"] = round(usable, 3)
    out["replicas"] = math.ceil(peak / usable - 1e-9)
    # capacity only a lower bound (nothing failed): the count needed is at most this
    out["bound"] = "at_most" if cap.get("limited_by_last_step") else None
    if inp.replica_cost is not None:
        out["replica_cost_per_month"] = inp.replica_cost
        out["infrastructure_per_month"] = round(out["replicas"] * inp.replica_cost, 2)
    return out


def _littles_law(rows: pd.DataFrame) -> list[dict] | None:
    if not len(rows):
        return None
    out = []
    for r in rows.itertuples():
        predicted = r.ok_rps * r.e2e_mean_ms / 1000
        ratio = predicted / r.users if r.users else float("nan")
        out.append(
            {
                "step": int(r.step),
                "users": float(r.users),
                "rps_x_e2e": round(float(predicted), 2),
                "ratio": round(float(ratio), 3) if math.isfinite(ratio) else None,
                "consistent": bool(math.isfinite(ratio) and 0.85 <= ratio <= 1.15),
                # a step shorter than ~3 request lifetimes never reaches a steady state
                "short_step": bool(r.seconds < 3 * r.e2e_mean_ms / 1000),
            }
        )
    return out


def _cost(
    replicas: dict | None,
    inp: PlanInput,
    mean_output_tokens: float | None,
    mean_input_tokens: float | None = None,
) -> dict | None:
    if not replicas or not mean_output_tokens:
        return None
    prices = load_prices(inp.prices)
    input_tokens: float
    if inp.input_tokens is not None:
        input_tokens, source = inp.input_tokens, "given"
    elif mean_input_tokens is not None:
        input_tokens, source = round(mean_input_tokens, 1), "measured"
    else:
        input_tokens, source = DEFAULT_INPUT_TOKENS, "default"
    per_day = replicas["peak_rps"] * inp.load_factor * 86_400
    input_m = per_day * input_tokens / 1e6
    output_m = per_day * mean_output_tokens / 1e6
    models = []
    for name, p in prices["models"].items():
        direct = input_m * p["direct_input"] + output_m * p["direct_output"]
        relay = input_m * p["relay_input"] + output_m * p["relay_output"]
        models.append(
            {
                "model": name,
                "direct_per_day": round(direct, 2),
                "relay_per_day": round(relay, 2),
                "direct_per_month": round(direct * 30, 2),
                "relay_per_month": round(relay * 30, 2),
                "saving_pct": round((1 - relay / direct) * 100, 1) if direct else None,
            }
        )
    return {
        "requests_per_day": round(per_day),
        "input_tokens_per_request": input_tokens,
        "input_tokens_source": source,  # given (--input-tokens), measured (records), default
        "output_tokens_per_request": round(mean_output_tokens, 1),
        "load_factor": inp.load_factor,
        "prices_as_of": prices.get("as_of"),
        "prices_file": str(inp.prices),
        "models": models,
    }


def _r(value, digits: int = 1) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None
