"""``relaybench compare A B --out DIR``: two runs side by side, which differences are real, and
whether B regressed.

First, are the runs comparable? Scenario, load, duration, targets, SLOs and the mock's settings
from both ``run.json`` files (``reports.shape``): every difference is said at the top, because a
5-user run and a 60-user run differ by their load whatever the code did.

Then the tests, per pair of targets (same name, or paired with ``--map A_NAME=B_NAME``):

- TTFT and ITL p50/p95, B − A with a bootstrap interval (``reports.significance``; ITL gaps of
  one request are correlated, so ITL resamples whole requests);
- ``error_rate``, B − A in fraction points with a Newcombe interval (Wilson score intervals of
  the two shares, from scipy);
- ``output_tokens_per_s``: the mean of the target's 1-second bins of delivered tokens (ok
  requests, by completion time), B − A with a bootstrap interval of the two means.

With m tests, each interval is at 1 − 0.05/m (Bonferroni), so the chance that two runs of one
distribution show any "significant" difference stays at most 5%. A significant difference is
*material* when it is also beyond the tolerance: latency and throughput by more than
``tolerance`` (default 10%) of A's value (and latency by at least ``NEGLIGIBLE_MS``), error rate
by more than ``error_tolerance`` (default 0.01, one point). A material difference for the worse
(B slower, more errors, less throughput) is a **regression**: ``relaybench compare`` exits 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from relaybench.errors import UsageError
from relaybench.records import PERCENTILES
from reports import charts
from reports.folder import RunFolder, load_folder, target_window_ns
from reports.html import data_uri, render_compare
from reports.markdown import table
from reports.samples import Sample, counted, ok, select
from reports.shape import differences
from reports.significance import percentile_diff_ci
from reports.stats import bootstrap_diff
from reports.summary import summarize
from reports.tables import fmt

ALPHA = 0.05  # family-wise: Bonferroni over every test of the comparison
NEGLIGIBLE_MS = 0.5  # a latency difference below this is never material
TOLERANCE = 0.10  # latency and throughput: material beyond 10 % of A's value
ERROR_TOLERANCE = 0.01  # error rate: material beyond one percentage point
TESTED = (("ttft_ms", "p50"), ("ttft_ms", "p95"), ("itl_ms", "p50"), ("itl_ms", "p95"))
SIDE_BY_SIDE = (
    ("requests", None),
    ("error_rate", None),
    ("ttft_ms", "p50"),
    ("ttft_ms", "p95"),
    ("ttft_ms", "p99"),
    ("itl_ms", "p50"),
    ("itl_ms", "p95"),
    ("e2e_ms", "p95"),
    ("requests_per_s", None),
    ("output_tokens_per_s", None),
    ("first_token_lag_ms", "p50"),
    ("chunk_lag_ms", "p99"),
)
# shown only when a side ran with a client retry policy (reports.traffic)
RETRY_SIDE_BY_SIDE = (("retry_amplification", None), ("user_error_rate", None),
                      ("attempt_error_rate", None))  # fmt: skip


@dataclass(frozen=True)
class Tolerances:
    relative: float = TOLERANCE
    error_rate: float = ERROR_TOLERANCE


def samples(folder: RunFolder, name: str) -> dict[str, Sample]:
    """TTFT (one per request) and ITL (with the request of each gap, for a cluster bootstrap)."""
    rows = folder.frame[folder.frame["target"].to_numpy() == name]
    return {metric: select(folder.records, rows, metric) for metric in ("ttft_ms", "itl_ms")}


def pair_targets(
    names_a: list[str], names_b: list[str], mapping: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """(A name, B name) pairs: the ``--map`` pairs first, then the names both runs have."""
    mapping = mapping or {}
    for a, b in mapping.items():
        if a not in names_a:
            raise UsageError(f"--map {a}={b}: run A has no target {a!r} (its targets: "
                             f"{', '.join(names_a) or 'none'})")  # fmt: skip
        if b not in names_b:
            raise UsageError(f"--map {a}={b}: run B has no target {b!r} (its targets: "
                             f"{', '.join(names_b) or 'none'})")  # fmt: skip
    if len(set(mapping.values())) != len(mapping):
        raise UsageError("--map: a target of run B is paired twice")
    pairs = list(mapping.items())
    taken_b = set(mapping.values())
    pairs += [(n, n) for n in names_a if n in names_b and n not in mapping and n not in taken_b]
    if not pairs:
        raise UsageError(
            f"no target to compare: run A has {', '.join(names_a) or 'none'}, run B has "
            f"{', '.join(names_b) or 'none'}; pair differently named targets with "
            "--map A_NAME=B_NAME"
        )
    return pairs


def label(pair: tuple[str, str]) -> str:
    return pair[0] if pair[0] == pair[1] else f"{pair[0]}→{pair[1]}"


def compare(
    dir_a: Path,
    dir_b: Path,
    mapping: dict[str, str] | None = None,
    tolerances: Tolerances | None = None,
) -> dict:
    tol = tolerances or Tolerances()
    a, b = load_folder(dir_a), load_folder(dir_b)
    sa, sb = summarize(a), summarize(b)
    pairs = pair_targets(list(sa["targets"]), list(sb["targets"]), mapping)
    paired_a, paired_b = {x for x, _ in pairs}, {y for _, y in pairs}
    only = sorted({f"A {n}" for n in sa["targets"] if n not in paired_a}
                  | {f"B {n}" for n in sb["targets"] if n not in paired_b})  # fmt: skip
    shape = differences(a.meta, b.meta, pairs)
    planned = _planned(a, b, sa, sb, pairs)
    confidence = 1 - ALPHA / max(len(planned), 1)
    tests = [
        {"target": label(pair), "metric": metric, **run_test(a, b, pair, metric, seed, confidence)}
        for seed, (pair, metric) in enumerate(planned)
    ]
    for t in tests:
        _judge(t, tol)
    side = []
    for na, nb in pairs:
        for key, sub in SIDE_BY_SIDE + RETRY_SIDE_BY_SIDE:
            va, vb = _value(sa["targets"][na], key, sub), _value(sb["targets"][nb], key, sub)
            if va is None and vb is None and (key, sub) in RETRY_SIDE_BY_SIDE:
                continue
            side.append({"target": label((na, nb)), "metric": f"{key}.{sub}" if sub else key,
                         "a": va, "b": vb})  # fmt: skip
    regressions = [t for t in tests if t["regression"]]
    return {
        "a": str(dir_a),
        "b": str(dir_b),
        "pairs": [list(p) for p in pairs],
        "common_targets": [label(p) for p in pairs],
        "unmatched_targets": only,
        "differences": [
            {"what": d.what, "a": d.a, "b": d.b, "material": d.material, "text": d.text()}
            for d in shape
        ],
        "verdict": verdict_text(tests, confidence),
        "regression": bool(regressions),
        "tolerance": {"relative": tol.relative, "error_rate": tol.error_rate},
        "confidence": round(confidence, 5),
        "tests": tests,
        "side_by_side": side,
        "health": {"a": sa["health"], "b": sb["health"]},
        "_folders": (a, b),
    }


def _planned(a, b, sa, sb, pairs) -> list[tuple[tuple[str, str], str]]:
    planned = []
    for pair in pairs:
        xa, xb = samples(a, pair[0]), samples(b, pair[1])
        planned += [
            (pair, f"{metric}.{stat}")
            for metric, stat in TESTED
            if xa[metric].values.size >= 2 and xb[metric].values.size >= 2
        ]
        if sa["targets"][pair[0]]["requests"] and sb["targets"][pair[1]]["requests"]:
            planned += [(pair, "error_rate"), (pair, "output_tokens_per_s")]
    return planned


def run_test(a: RunFolder, b: RunFolder, pair, metric: str, seed: int, confidence: float) -> dict:
    """One B − A difference with its interval: ``value``, ``ci_low``, ``ci_high``, ``relative``."""
    if metric == "error_rate":
        return _error_rate_diff(a, b, pair, confidence)
    if metric == "output_tokens_per_s":
        return _throughput_diff(a, b, pair, seed, confidence)
    family, stat = metric.split(".")
    xa, xb = samples(a, pair[0])[family], samples(b, pair[1])[family]
    q = PERCENTILES[stat]
    diff = bootstrap_diff(
        xa.values, xb.values, q, seed=seed, confidence=confidence,
        groups_a=xa.rows, groups_b=xb.rows,
    )  # fmt: skip
    base = float(np.percentile(xa.values, q))
    diff["relative"] = round(diff["value"] / base, 4) if base else None
    return {**diff, "unit": "ms", "worse": "higher"}


def _error_rate_diff(a: RunFolder, b: RunFolder, pair, confidence: float) -> dict:
    """Newcombe's hybrid score interval of p_B − p_A (Wilson intervals of each share)."""
    (fa, na), (fb, nb) = _failures(a, pair[0]), _failures(b, pair[1])
    pa, pb = fa / na, fb / nb
    la, ua = _wilson(fa, na, confidence)
    lb, ub = _wilson(fb, nb, confidence)
    value = pb - pa
    low = value - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = value + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return {
        "value": round(value, 6), "ci_low": round(low, 6), "ci_high": round(high, 6),
        "n_a": na, "n_b": nb, "relative": None, "unit": "fraction", "worse": "higher",
    }  # fmt: skip


def _failures(folder: RunFolder, name: str) -> tuple[int, int]:
    """Failed and measured requests (records the run's stop cut off are neither)."""
    rows = counted(folder.frame[folder.frame["target"].to_numpy() == name])
    return int(len(rows) - rows["ok"].to_numpy(dtype=bool).sum()), len(rows)


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def token_bins(folder: RunFolder, name: str) -> np.ndarray:
    """Output tokens of ok requests per 1-second bin of the target's window, by completion."""
    rows = folder.frame[folder.frame["target"].to_numpy() == name]
    started, ended = target_window_ns(folder, name, rows)
    n = max(1, round((ended - started) / 1e9))
    good = ok(rows)
    ends = (
        good["start_ns"].to_numpy(dtype=np.float64)
        + np.nan_to_num(good["e2e_ms"].to_numpy(dtype=np.float64)) * 1e6
    )
    index = np.clip(((ends - started) // 1e9).astype(np.int64), 0, n - 1)
    tokens = good["output_tokens"].to_numpy(dtype=np.float64)
    return np.bincount(index, weights=tokens, minlength=n).astype(np.float64)


def _throughput_diff(a: RunFolder, b: RunFolder, pair, seed: int, confidence: float) -> dict:
    bins_a, bins_b = token_bins(a, pair[0]), token_bins(b, pair[1])
    if bins_a.size < 2 or bins_b.size < 2:  # under 2 s: one bin, no interval
        value = float(bins_b.mean() - bins_a.mean())
        low = high = value
    else:
        iv = percentile_diff_ci(bins_a, bins_b, "mean", confidence, 2000, seed)
        value, low, high = iv.estimate, iv.low, iv.high
    base = float(bins_a.mean())
    return {
        "value": round(value, 3), "ci_low": round(low, 3), "ci_high": round(high, 3),
        "n_a": int(bins_a.size), "n_b": int(bins_b.size),
        "relative": round(value / base, 4) if base else None,
        "unit": "tokens/s", "worse": "lower",
    }  # fmt: skip


def _judge(test: dict, tol: Tolerances) -> None:
    """significant (the interval excludes 0), material (beyond tolerance), regression (worse)."""
    value, rel = test["value"], test["relative"]
    test["significant"] = bool(test["ci_low"] > 0 or test["ci_high"] < 0)
    if test["unit"] == "fraction":
        beyond = abs(value) > tol.error_rate
    elif test["unit"] == "ms":
        beyond = abs(value) >= NEGLIGIBLE_MS and abs(rel if rel is not None else math.inf) > (
            tol.relative
        )
    else:
        beyond = abs(rel) > tol.relative if rel is not None else value != 0
    material = test["significant"] and beyond
    worse = value > 0 if test["worse"] == "higher" else value < 0
    test["negligible"] = bool(test["significant"] and not beyond)  # real, within tolerance
    test["material"] = bool(material)
    test["regression"] = bool(material and worse)


def describe(test: dict) -> str:
    """``relay ttft_ms.p50 +12.00 ms (+6.0%) [+8.00, +16.00]``, in the test's own unit."""
    if test["unit"] == "fraction":
        return (
            f"{test['target']} error_rate {test['value'] * 100:+.1f} points "
            f"[{test['ci_low'] * 100:+.1f}, {test['ci_high'] * 100:+.1f}]"
        )
    unit = " ms" if test["unit"] == "ms" else " tokens/s"
    rel = f" ({test['relative']:+.1%})" if test["relative"] is not None else ""
    return (
        f"{test['target']} {test['metric']} {test['value']:+.2f}{unit}{rel} "
        f"[{test['ci_low']:+.2f}, {test['ci_high']:+.2f}]"
    )


def verdict_text(tests: list[dict], confidence: float) -> str:
    """Plain sentences: regressions first, then improvements, real-but-small, and noise."""
    if not tests:
        return "Nothing to test: no target has requests in both runs."
    significant = [t for t in tests if t["significant"]]
    regressions = [t for t in significant if t.get("regression")]
    better = [t for t in significant if t.get("material") and not t.get("regression")]
    small = [t for t in significant if t["negligible"]]
    if not significant:
        return (
            f"No significant difference: every one of the {len(tests)} differences is within "
            f"noise (each {confidence:.1%} interval contains 0)."
        )
    parts = []
    if regressions:
        parts.append(
            f"REGRESSION: B is worse beyond the tolerance in {len(regressions)} of {len(tests)} "
            "tests: " + "; ".join(map(describe, regressions)) + "."
        )
    if better:
        parts.append(
            f"B is better beyond the tolerance in {len(better)} of {len(tests)} tests: "
            + "; ".join(map(describe, better))
            + "."
        )
    if small:
        lead = "No material difference: " if not (regressions or better) else "Also "
        parts.append(
            f"{lead}{len(small)} of {len(tests)} "
            + ("is " if len(small) == 1 else "are ")
            + "statistically real but within the tolerance: "
            + "; ".join(map(describe, small))
            + ("; the others are within noise." if not (regressions or better) else ".")
        )
    return " ".join(parts)


def _value(target: dict, key: str, sub: str | None):
    value = target.get(key)
    if sub is not None:
        value = value.get(sub) if isinstance(value, dict) else None
    return value


def difference_lines(result: dict) -> list[str]:
    """What differs between the two runs, material (scenario, load) first; empty when nothing."""
    diffs = result["differences"]
    if not diffs:
        return []
    material = [d["text"] for d in diffs if d["material"]]
    other = [d["text"] for d in diffs if not d["material"]]
    lines = []
    if material:
        lines.append(
            "⚠ The runs were measured under different load: " + "; ".join(material)
            + " (A vs B). Their differences below measure the load as much as the code."
        )  # fmt: skip
    if other:
        lines.append("The runs also differ in: " + "; ".join(other) + " (A vs B).")
    return lines


def markdown(result: dict) -> str:
    parts = [f"# relaybench compare\n\nA = `{result['a']}`  \nB = `{result['b']}`"]
    parts += difference_lines(result)
    parts.append(f"**{result['verdict']}**")
    tol = result["tolerance"]
    parts.append(
        f"Exit status {1 if result['regression'] else 0}: a regression is a significant "
        f"difference for the worse beyond the tolerance ({tol['relative']:.0%} of A for latency "
        f"and throughput, {tol['error_rate'] * 100:g} percentage point"
        + ("" if tol["error_rate"] == 0.01 else "s")
        + " of error rate)."
    )
    for side in ("a", "b"):
        health = result["health"][side]
        if health["degraded"]:
            reasons = "; ".join(health["reasons"])
            parts.append(f"⚠ run {side.upper()} is degraded: {reasons}")
    if result["unmatched_targets"]:
        parts.append("Targets in only one run (not compared): " + ", ".join(
            result["unmatched_targets"]))  # fmt: skip
    parts.append(
        f"## Differences B − A with {result['confidence']:.1%} intervals "
        "(95% family-wise, Bonferroni)"
    )
    parts.append(table(*test_rows(result)))
    parts.append("## Side by side")
    parts.append(table(*side_rows(result)))
    return "\n\n".join(parts) + "\n"


def test_rows(result: dict):
    header = ["target", "metric", "B − A", "change", f"{result['confidence']:.1%} CI", "verdict"]
    rows = [
        [
            t["target"],
            t["metric"],
            _amount(t, t["value"]),
            f"{t['relative']:+.1%}" if t["relative"] is not None else "–",
            f"[{_amount(t, t['ci_low'], unit=False)}, {_amount(t, t['ci_high'], unit=False)}]",
            _call(t),
        ]
        for t in result["tests"]
    ]
    return header, rows


def _amount(test: dict, value: float, unit: bool = True) -> str:
    if test["unit"] == "fraction":
        return f"{value * 100:+.1f}" + (" points" if unit else "")
    return f"{value:+.2f}" + (f" {test['unit']}" if unit else "")


def _call(test: dict) -> str:
    if not test["significant"]:
        return "within noise"
    worse = test["value"] > 0 if test["worse"] == "higher" else test["value"] < 0
    word = {
        "ms": ("B slower", "B faster"),
        "fraction": ("B fails more", "B fails less"),
        "tokens/s": ("B delivers less", "B delivers more"),
    }[test["unit"]][0 if worse else 1]
    if test["regression"]:
        return f"REGRESSION: {word}"
    return f"{word}, within tolerance" if test["negligible"] else word


def side_rows(result: dict):
    rows = [
        [row["target"], row["metric"], _cell(row["a"]), _cell(row["b"])]
        for row in result["side_by_side"]
    ]
    return ["target", "metric", "A", "B"], rows


def _cell(value) -> str:
    if isinstance(value, float) and value < 1:
        return f"{value:.4f}"
    return fmt(value, 2)


def write_comparison(
    dir_a: Path,
    dir_b: Path,
    out: Path,
    mapping: dict[str, str] | None = None,
    tolerances: Tolerances | None = None,
) -> dict:
    result = compare(Path(dir_a), Path(dir_b), mapping, tolerances)
    a, b = result.pop("_folders")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = ("A " + Path(dir_a).name, "B " + Path(dir_b).name)
    images = []
    for metric, title in (("ttft_ms", "TTFT"), ("itl_ms", "ITL")):
        pairs = {
            label((na, nb)): (samples(a, na)[metric].values, samples(b, nb)[metric].values)
            for na, nb in result["pairs"]
        }
        path = charts.cdf_overlay(pairs, labels, out / f"compare_{metric}_cdf.png", title)
        images.append({"title": f"{title} CDF, A vs B", "src": data_uri(path), "name": path.name})
    text = markdown(result)
    result["markdown"] = text
    (out / "compare.md").write_text(text)
    (out / "compare.json").write_text(
        json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=2) + "\n"
    )
    (out / "compare.html").write_text(
        render_compare(
            {
                "result": result,
                "differences": difference_lines(result),
                "tests": test_rows(result),
                "side": side_rows(result),
                "charts": images,
            }
        )
    )
    return result
