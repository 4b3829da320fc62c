"""``relaybench gate DIR --thresholds FILE [--baseline DIR]``: exit 0 pass, 1 fail, 2 bad input.

Prints one line per check; ``--junit FILE`` and ``--markdown FILE`` write the same results for CI
test tabs and job pages, and when ``$GITHUB_STEP_SUMMARY`` is set the markdown is appended to it.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from relaybench.cliargs import Parser, bounded
from relaybench.errors import UsageError
from reports.gate import GateOptions, GateReport, Result, evaluate, format_value, open_run
from reports.shape import differences
from reports.thresholds import load_thresholds


def build_parser() -> Parser:
    parser = Parser(
        prog="relaybench gate",
        description="Check a run folder against performance thresholds "
        "(exit 0 pass, 1 a check failed or the run is degraded, 2 bad usage or data).",
    )
    parser.add_argument("dir", type=Path, help="the run folder to check")
    parser.add_argument("--thresholds", type=Path, required=True, help="thresholds TOML file")
    parser.add_argument("--baseline", type=Path, help="baseline run folder for relative limits")
    parser.add_argument(
        "--allow-degraded",
        action="store_true",
        help="gate a degraded run anyway instead of failing it as inconclusive",
    )
    parser.add_argument(
        "--allow-shape-mismatch",
        action="store_true",
        help="use a baseline whose scenario or load (users, rate, steps, peak multiple) differs "
        "from the run's (refused by default: exit 2)",
    )
    parser.add_argument("--junit", type=Path, help="write JUnit XML here")
    parser.add_argument("--markdown", type=Path, help="write a markdown report here")
    parser.add_argument(
        "--confidence",
        type=bounded(0.5, 1, high_open=True),
        default=0.95,
        help="interval confidence, within [0.5, 1)",
    )
    parser.add_argument(
        "--resamples", type=bounded(100, kind=int), default=2000, help="bootstrap resamples"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    thresholds = load_thresholds(args.thresholds)
    run = open_run(args.dir, "run")
    baseline = open_run(args.baseline, "baseline") if args.baseline else None
    options = GateOptions(
        allow_degraded=args.allow_degraded,
        allow_shape_mismatch=args.allow_shape_mismatch,
        confidence=args.confidence,
        n_boot=args.resamples,
        seed=args.seed,
    )
    report = evaluate(thresholds, run, baseline, options)
    if baseline is not None and thresholds.needs_baseline and args.allow_shape_mismatch:
        shown = "; ".join(d.text() for d in differences(baseline.meta, run.meta) if d.material)
        if shown:
            print(f"note: baseline vs run differ in {shown}: gated anyway (--allow-shape-mismatch)")
    print(render_text(report))
    markdown = render_markdown(report)
    if args.junit:
        _write(args.junit, render_junit(report))
    if args.markdown:
        _write(args.markdown, markdown)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        _write(Path(step_summary), markdown + "\n", append=True)
    return 0 if report.passed else 1


def _write(path: Path, text: str, *, append: bool = False) -> None:
    try:
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


# -- renderers ---------------------------------------------------------------------------------


def _cells(result: Result) -> tuple[str, str, str, str, str, str]:
    return (
        result.status,
        result.target,
        result.metric,
        format_value(result.measured) if result.kind != "health" else _health_word(result),
        result.limit,
        result.detail,
    )


def _health_word(result: Result) -> str:
    return "degraded" if result.measured else "healthy"


def render_text(report: GateReport) -> str:
    """One aligned line per check, then a verdict line."""
    rows = [_cells(r) for r in report.results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True))
        lines.append(f"{head}  {row[5]}".rstrip())
    failed = len(report.failures)
    lines.append(
        f"gate: {report.verdict} ({len(report.results) - failed} passed, {failed} failed; "
        f"run {report.run}"
        + (f", baseline {report.baseline}" if report.baseline else "")
        + f", thresholds {report.thresholds})"
    )
    return "\n".join(lines)


def render_markdown(report: GateReport) -> str:
    icon = {"PASS": "✅", "FAIL": "❌", "INCONCLUSIVE": "⚠️"}[report.verdict]
    lines = [
        f"## relaybench gate: {icon} {report.verdict}",
        "",
        f"Run `{report.run}`"
        + (f" · baseline `{report.baseline}`" if report.baseline else "")
        + f" · thresholds `{report.thresholds}` · intervals at {report.confidence:.0%} confidence",
        "",
        "| Result | Target | Metric | Measured | Limit | Detail |",
        "|---|---|---|---:|---|---|",
    ]
    for result in report.results:
        cells = [c.replace("|", "\\|") for c in _cells(result)]
        cells[0] = f"{'✅' if result.passed else '❌'} {cells[0]}"
        lines.append("| " + " | ".join(cells) + " |")
    failed = len(report.failures)
    lines += ["", f"{len(report.results) - failed} passed, {failed} failed."]
    return "\n".join(lines) + "\n"


def render_junit(report: GateReport) -> str:
    """A JUnit XML document: one testsuite, one testcase per check, a failure element per FAIL."""
    failures = len(report.failures)
    suites = ET.Element(
        "testsuites", name="relaybench gate", tests=str(len(report.results)),
        failures=str(failures), errors="0", time="0",
    )  # fmt: skip
    suite = ET.SubElement(
        suites, "testsuite", name=f"relaybench gate {report.run}",
        tests=str(len(report.results)), failures=str(failures), errors="0", skipped="0",
        time="0",
    )  # fmt: skip
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("run", report.run),
        ("baseline", report.baseline or ""),
        ("thresholds", report.thresholds),
        ("confidence", report.confidence),
        ("verdict", report.verdict),
    ):
        ET.SubElement(props, "property", name=name, value=str(value))
    for result in report.results:
        status, target, metric, measured, limit, detail = _cells(result)
        case = ET.SubElement(
            suite, "testcase", classname=f"relaybench.gate.{target}", name=metric, time="0"
        )
        line = f"{status} {target} {metric}: measured {measured}, limit {limit}"
        if detail:
            line += f"; {detail}"
        if not result.passed:
            failure = ET.SubElement(case, "failure", message=line, type=result.kind)
            failure.text = line
        else:
            ET.SubElement(case, "system-out").text = line
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
