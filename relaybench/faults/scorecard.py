"""The scorecard: headline totals from the results, and its four files.

    faults.json         per-scenario results and the totals (the machine-readable record)
    faults.md           the same as Markdown (a CI summary, a PR comment)
    faults.html         self-contained HTML (inline style, nothing fetched)
    faults-junit.xml    one test case per scenario: FAIL a failure, skipped an INFO skip

Totals: ``truncated_as_success`` (broken streams the client took for complete answers: must
be 0), ``worst_hang_s`` (the longest a client waited for an error), ``cancel_propagation_ms``
(client gone -> upstream request ended, p50 and max) and ``duplicated_content``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from relaybench.faults.scenarios import FAIL, INFO, PASS, SCENARIOS, Result

SCHEMA_VERSION = 1
FILES = ("faults.json", "faults.md", "faults.html", "faults-junit.xml")


def totals(results: Sequence[Result]) -> dict[str, Any]:
    figures = [r.figures for r in results]
    hangs = [f["hang_s"] for f in figures if isinstance(f.get("hang_s"), int | float)]
    cancels = [
        f["cancel_ms"] if f.get("cancel_ms") is not None else f["cancel_ms_at_least"]
        for f in figures
        if "cancel_ms" in f
    ]
    uncancelled = sum(1 for f in figures if "cancel_ms" in f and f["cancel_ms"] is None)
    return {
        "scenarios": len(results),
        "passed": sum(1 for r in results if r.verdict == PASS),
        "failed": sum(1 for r in results if r.verdict == FAIL),
        "info": sum(1 for r in results if r.verdict == INFO),
        "truncated_as_success": sum(1 for f in figures if f.get("truncated")),
        "worst_hang_s": round(max(hangs), 3) if hangs else None,
        "worst_hang_gave_up": any(f.get("gave_up") for f in figures),  # then: at least that
        "cancel_propagation_ms": {
            "count": len(cancels),
            "p50": round(float(np.percentile(cancels, 50)), 3) if cancels else None,
            "max": round(float(np.max(cancels)), 3) if cancels else None,
            "not_cancelled": uncancelled,  # those count as the watch time: a lower bound
        },
        "duplicated_content": sum(1 for f in figures if f.get("duplicated")),
    }


def document(results: Sequence[Result], run: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "totals": totals(results),
        "scenarios": [r.as_dict() for r in results],
    }


def scrub(value: Any, hide: Sequence[str]) -> Any:
    """``value`` with every ``hide`` string replaced by ``***`` (a relay may echo a key)."""
    if isinstance(value, str):
        for secret in hide:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: scrub(v, hide) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, hide) for v in value]
    return value


def write(
    out: Path, results: Sequence[Result], run: dict[str, Any], hide: Sequence[str] = ()
) -> dict[str, Any]:
    """Write the four files into ``out``, none holding a ``hide`` string; returns the document."""
    out.mkdir(parents=True, exist_ok=True)
    doc = scrub(document(results, run), [h for h in hide if h])
    (out / "faults.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    (out / "faults.md").write_text(markdown(doc), encoding="utf-8")
    (out / "faults.html").write_text(render_html(doc), encoding="utf-8")
    (out / "faults-junit.xml").write_bytes(junit(doc))
    return doc


def headline(doc: dict[str, Any]) -> list[tuple[str, str]]:
    t = doc["totals"]
    cancel = t["cancel_propagation_ms"]
    bound = " (at least: some never ended)" if cancel["not_cancelled"] else ""

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    hang = "n/a" if t["worst_hang_s"] is None else f"{t['worst_hang_s']:.2f} s"
    if t["worst_hang_gave_up"]:
        hang += " or more (the client gave up waiting)"
    return [
        ("verdict", f"{t['passed']} PASS, {t['failed']} FAIL, {t['info']} INFO"),
        ("truncated as success (must be 0)", str(t["truncated_as_success"])),
        ("worst hang", hang),
        ("cancel propagation p50 / max", f"{ms(cancel['p50'])} / {ms(cancel['max'])}{bound}"),
        ("duplicated content", str(t["duplicated_content"])),
    ]


def _title(entry: dict[str, Any]) -> str:
    return str(entry.get("title") or entry["name"])


def _why(entry: dict[str, Any]) -> str:
    scenario = SCENARIOS.get(entry["name"])
    return scenario.why if scenario else ""


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    run = doc["run"]
    lines = [
        f"# Fault scorecard: {run['target']['name']}",
        "",
        f"Target `{run['target']['url']}`, mock `{run['mock_url']}`"
        + (f", under load of {run['under_load']} streams" if run.get("under_load") else "")
        + f"; {run['duration_s']:.1f} s"
        + (" — **interrupted: partial scorecard**" if run.get("interrupted") else ""),
        "",
        "| total | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in headline(doc)),
        "",
        "| verdict | scenario | value | detail |",
        "|---|---|---|---|",
    ]
    for entry in doc["scenarios"]:
        lines.append(
            f"| {entry['verdict']} | {_md(_title(entry))} | {_md(entry['value'])} "
            f"| {_md(entry['detail'])} |"
        )
    lines += ["", "## What the scenarios mean", ""]
    lines += [f"- **{_title(e)}**: {_why(e)}" for e in doc["scenarios"] if _why(e)]
    return "\n".join(lines) + "\n"


def render_html(doc: dict[str, Any]) -> str:
    """faults.html: ``reports/templates/faults.html.j2`` on the reports' Jinja2 environment
    (autoescape on: a relay's answer quoted in a detail cannot inject markup)."""
    from reports.html import render

    scenarios = [{**x, "title": _title(x), "why": _why(x)} for x in doc["scenarios"]]
    return render("faults.html.j2", run=doc["run"], headline=headline(doc), scenarios=scenarios)


def junit(doc: dict[str, Any]) -> bytes:
    t = doc["totals"]
    suite = ET.Element(
        "testsuite",
        name=f"relaybench faults {doc['run']['target']['name']}",
        tests=str(t["scenarios"]),
        failures=str(t["failed"]),
        skipped=str(sum(1 for s in doc["scenarios"] if s["figures"].get("skipped"))),
        time=f"{doc['run']['duration_s']:.3f}",
    )
    for entry in doc["scenarios"]:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"faults.{doc['run']['target']['name']}",
            name=entry["name"],
            time=f"{entry['duration_s']:.3f}",
        )
        if entry["verdict"] == FAIL:
            failure = ET.SubElement(case, "failure", message=entry["value"])
            failure.text = entry["detail"]
        elif entry["figures"].get("skipped"):
            ET.SubElement(case, "skipped", message=entry["detail"])
        ET.SubElement(case, "system-out").text = f"{entry['verdict']}: {entry['value']}"
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="utf-8", xml_declaration=True)
