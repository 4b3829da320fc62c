"""``relaybench compare A B --out DIR``: two runs side by side, and which differences are real.

For each target present in both runs, TTFT and ITL p50/p95 differences (B − A) carry a bootstrap
interval (``reports.significance.percentile_diff_ci``); a difference whose interval contains 0 is
called *within noise*. With m tests, each interval is at 1 − 0.05/m (Bonferroni), so the chance
that two runs of one distribution show any "significant" difference stays at most 5%. ITL gaps
of one request are correlated, so ITL intervals come from a cluster bootstrap that resamples
whole requests. Other metrics (throughput, error rate, lag) are shown side by side without a
test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from relaybench.records import PERCENTILES
from reports import charts
from reports.folder import RunFolder, load_folder
from reports.html import data_uri, render_compare
from reports.markdown import table
from reports.samples import Sample, select
from reports.stats import bootstrap_diff
from reports.summary import summarize
from reports.tables import fmt

ALPHA = 0.05  # family-wise: Bonferroni over every test of the comparison
# a significant difference this small is real but does not matter: named, not headlined
NEGLIGIBLE_MS = 0.5
NEGLIGIBLE_REL = 0.01
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


def samples(folder: RunFolder, name: str) -> dict[str, Sample]:
    """TTFT (one per request) and ITL (with the request of each gap, for a cluster bootstrap)."""
    rows = folder.frame[folder.frame["target"].to_numpy() == name]
    return {metric: select(folder.records, rows, metric) for metric in ("ttft_ms", "itl_ms")}


def compare(dir_a: Path, dir_b: Path) -> dict:
    a, b = load_folder(dir_a), load_folder(dir_b)
    sa, sb = summarize(a), summarize(b)
    common = [n for n in sa["targets"] if n in sb["targets"]]
    only = sorted(set(sa["targets"]) ^ set(sb["targets"]))
    tests, side = [], []
    pooled = {name: (samples(a, name), samples(b, name)) for name in common}
    planned = [
        (name, metric, stat)
        for name, (xa, xb) in pooled.items()
        for metric, stat in TESTED
        if xa[metric].values.size >= 2 and xb[metric].values.size >= 2
    ]
    confidence = 1 - ALPHA / max(len(planned), 1)
    for seed, (name, metric, stat) in enumerate(planned):
        xa, xb = pooled[name][0][metric], pooled[name][1][metric]
        q = PERCENTILES[stat]
        diff = bootstrap_diff(
            xa.values, xb.values, q, seed=seed, confidence=confidence,
            groups_a=xa.rows, groups_b=xb.rows,
        )  # fmt: skip
        base = float(np.percentile(xa.values, q))
        diff["relative"] = round(diff["value"] / base, 4) if base else None
        diff["significant"] = diff["ci_low"] > 0 or diff["ci_high"] < 0
        small = abs(diff["value"]) < NEGLIGIBLE_MS or abs(diff["relative"] or 0) < NEGLIGIBLE_REL
        diff["negligible"] = bool(diff["significant"] and small)
        tests.append({"target": name, "metric": f"{metric}.{stat}", **diff})
    for name in common:
        for key, sub in SIDE_BY_SIDE + RETRY_SIDE_BY_SIDE:
            va, vb = _value(sa["targets"][name], key, sub), _value(sb["targets"][name], key, sub)
            if va is None and vb is None and (key, sub) in RETRY_SIDE_BY_SIDE:
                continue
            side.append(
                {"target": name, "metric": f"{key}.{sub}" if sub else key, "a": va, "b": vb}
            )
    verdict = verdict_text(tests, confidence)
    return {
        "a": str(dir_a),
        "b": str(dir_b),
        "common_targets": common,
        "unmatched_targets": only,
        "verdict": verdict,
        "confidence": round(confidence, 5),
        "tests": tests,
        "side_by_side": side,
        "health": {"a": sa["health"], "b": sb["health"]},
        "_folders": (a, b),
    }


def verdict_text(tests: list[dict], confidence: float) -> str:
    """One plain sentence: which differences are real, which negligible, which noise."""
    if not tests:
        return "Nothing to test: no target has TTFT or ITL samples in both runs."
    significant = [t for t in tests if t["significant"]]
    material = [t for t in significant if not t["negligible"]]
    negligible = [t for t in significant if t["negligible"]]
    small = (
        f"statistically real but negligible (< {NEGLIGIBLE_MS:g} ms or < {NEGLIGIBLE_REL:.0%}): "
        + "; ".join(f"{t['target']} {t['metric']} {t['value']:+.2f} ms" for t in negligible)
    )
    if not significant:
        return (
            "No significant difference: every TTFT and ITL difference is within noise "
            f"(each {confidence:.1%} bootstrap interval contains 0)."
        )
    if not material:
        return (
            f"No material difference: {len(negligible)} of {len(tests)} "
            + ("is " if len(negligible) == 1 else "are ")
            + small
            + "; the others are within noise."
        )
    text = f"{len(material)} of {len(tests)} differences are significant: " + "; ".join(
        f"{t['target']} {t['metric']} {t['value']:+.2f} ms ({t['relative']:+.1%}) "
        f"[{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]"
        for t in material
    )
    return text + (f". Also {small}." if negligible else ".")


def _value(target: dict, key: str, sub: str | None):
    value = target.get(key)
    if sub is not None:
        value = value.get(sub) if isinstance(value, dict) else None
    return value


def markdown(result: dict) -> str:
    parts = [f"# relaybench compare\n\nA = `{result['a']}`  \nB = `{result['b']}`"]
    parts.append(f"**{result['verdict']}**")
    for side in ("a", "b"):
        health = result["health"][side]
        if health["degraded"]:
            reasons = "; ".join(health["reasons"])
            parts.append(f"⚠ run {side.upper()} is degraded: {reasons}")
    if result["unmatched_targets"]:
        parts.append("Targets in only one run (not compared): " + ", ".join(
            result["unmatched_targets"]))  # fmt: skip
    parts.append(
        f"## Differences B − A with {result['confidence']:.1%} bootstrap intervals "
        "(95% family-wise, Bonferroni)"
    )
    parts.append(table(*test_rows(result)))
    parts.append("## Side by side")
    parts.append(table(*side_rows(result)))
    return "\n\n".join(parts) + "\n"


def test_rows(result: dict):
    header = [
        "target",
        "metric",
        "B − A (ms)",
        "change",
        f"{result['confidence']:.1%} CI",
        "verdict",
    ]
    rows = [
        [
            t["target"],
            t["metric"],
            f"{t['value']:+.2f}",
            f"{t['relative']:+.1%}" if t["relative"] is not None else "–",
            f"[{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]",
            _call(t),
        ]
        for t in result["tests"]
    ]
    return header, rows


def _call(test: dict) -> str:
    if not test["significant"]:
        return "within noise"
    direction = "B slower" if test["value"] > 0 else "B faster"
    return f"{direction}, negligible" if test["negligible"] else direction


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


def write_comparison(dir_a: Path, dir_b: Path, out: Path) -> dict:
    result = compare(Path(dir_a), Path(dir_b))
    a, b = result.pop("_folders")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = ("A " + Path(dir_a).name, "B " + Path(dir_b).name)
    images = []
    for metric, title in (("ttft_ms", "TTFT"), ("itl_ms", "ITL")):
        pairs = {
            n: (samples(a, n)[metric].values, samples(b, n)[metric].values)
            for n in result["common_targets"]
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
                "tests": test_rows(result),
                "side": side_rows(result),
                "charts": images,
            }
        )
    )
    return result
