"""``relaybench report``, ``relaybench compare`` and ``relaybench plan``.

Bad input (a missing folder, no records, a bad flag) raises UsageError: ``relaybench`` prints
``error: <message>`` and exits 2. Skipped record lines are reported as notes, not failures.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from relaybench.cliargs import Parser, bounded, non_negative_int, positive_float
from relaybench.errors import UsageError


def _existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a directory")
    return path


share_below_one = bounded(0, 1, high_open=True)


def report_main(argv: Sequence[str]) -> int:
    parser = Parser(prog="relaybench report", description="Rebuild a run folder's report.")
    parser.add_argument("dir", type=_existing_dir, help="the run folder")
    args = parser.parse_args(argv)
    from reports.markdown import health_lines, results_table
    from reports.pipeline import rebuild

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped lines are listed in the report's notes
        summary = rebuild(args.dir)
    for note in summary.get("notes") or []:
        print(f"note: {note}", file=sys.stderr)
    print(results_table(summary))
    print()
    print(health_lines(summary))
    print(f"\nreport: {args.dir / 'report.html'}  {args.dir / 'report.md'}")
    return 0


def _pair(value: str) -> tuple[str, str]:
    a, sep, b = value.partition("=")
    if not sep or not a or not b:
        raise argparse.ArgumentTypeError(f"{value!r}: use A_NAME=B_NAME, e.g. relay=gateway")
    return a, b


def compare_main(argv: Sequence[str]) -> int:
    parser = Parser(
        prog="relaybench compare",
        description="Compare two run folders side by side: what differs between the runs, which "
        "differences are real, and whether B regressed (exit 0 no regression, 1 a regression, "
        "2 bad usage).",
    )
    parser.add_argument("a", type=_existing_dir, help="run folder A (the baseline)")
    parser.add_argument("b", type=_existing_dir, help="run folder B")
    parser.add_argument("--out", type=Path, required=True, help="folder for the comparison")
    parser.add_argument(
        "--map",
        type=_pair,
        action="append",
        default=[],
        metavar="A_NAME=B_NAME",
        help="compare target A_NAME of run A with target B_NAME of run B (repeatable; "
        "targets of the same name pair by themselves)",
    )
    parser.add_argument(
        "--tolerance",
        type=bounded(0, 10),
        default=0.10,
        help="latency and throughput: a significant change is a regression beyond this share "
        "of A's value",
    )
    parser.add_argument(
        "--error-tolerance",
        type=bounded(0, 1),
        default=0.01,
        help="error rate: a significant rise is a regression beyond this many fraction points",
    )
    args = parser.parse_args(argv)
    from reports.compare import Tolerances, write_comparison

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    mapping = dict(args.map)
    if len(mapping) != len(args.map):
        raise UsageError("--map: a target of run A is paired twice")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = write_comparison(
            args.a, args.b, args.out, mapping, Tolerances(args.tolerance, args.error_tolerance)
        )
    print(result["markdown"])
    print(f"\ncomparison: {args.out / 'compare.html'}  {args.out / 'compare.md'}")
    return 1 if result["regression"] else 0


def plan_main(argv: Sequence[str]) -> int:
    from reports.capacity import DEFAULT_INPUT_TOKENS, PRICES, PlanInput

    parser = Parser(
        prog="relaybench plan",
        description="Capacity plan from a step or sweep run, or a search folder: highest load "
        "meeting the SLOs, replicas for a target peak, Little's law check, cost per day and month.",
    )
    parser.add_argument("dir", type=_existing_dir, help="a step run or a relaybench search folder")
    parser.add_argument(
        "--slo-ttft-p95-ms",
        type=positive_float,
        help="SLO: TTFT p95 limit, ms (default 1000; a search folder uses its own SLOs)",
    )
    parser.add_argument(
        "--slo-error-rate",
        type=share_below_one,
        help="SLO: highest share of failed requests, within [0, 1) (default 0.01)",
    )
    peak = parser.add_mutually_exclusive_group()
    peak.add_argument("--peak-rps", type=positive_float, help="target peak in requests/s")
    peak.add_argument("--peak-multiple", type=positive_float, help="target peak as a multiple of "
                      "today's (the run's highest 10-second mean req/s)")  # fmt: skip
    parser.add_argument("--headroom", type=share_below_one, default=0.3, help="spare share")
    parser.add_argument(
        "--input-tokens",
        type=non_negative_int,
        help="prompt tokens per request for the cost (default: a run folder's measured prompts "
        f"when its records carry them, as trace replay and chat do, else {DEFAULT_INPUT_TOKENS}; "
        f"a search folder: {DEFAULT_INPUT_TOKENS})",
    )
    parser.add_argument("--load-factor", type=positive_float, default=0.35,
                        help="mean daily traffic as a share of the peak")  # fmt: skip
    parser.add_argument("--prices", type=Path, default=PRICES, help="price table (TOML)")
    parser.add_argument(
        "--replica-cost",
        type=positive_float,
        help="infrastructure cost per replica-month (USD), added to the plan",
    )
    parser.add_argument("--target", help="target to plan for (default: relay, else direct)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    if not args.prices.is_file():
        raise UsageError(f"relaybench plan: price table {args.prices} does not exist")
    from reports.markdown import plan_markdown
    from reports.pipeline import analyse
    from reports.search import is_search_folder

    searched = is_search_folder(args.dir)
    if searched and (args.slo_ttft_p95_ms is not None or args.slo_error_rate is not None):
        raise UsageError(
            "relaybench plan: a search folder's verdicts were judged against its own SLOs "
            "(search.json); run a new search for other SLOs"
        )
    inp = PlanInput(
        slo_ttft_p95_ms=1000.0 if args.slo_ttft_p95_ms is None else args.slo_ttft_p95_ms,
        slo_error_rate=0.01 if args.slo_error_rate is None else args.slo_error_rate,
        peak_rps=args.peak_rps,
        peak_multiple=args.peak_multiple if args.peak_rps is None else None,
        headroom=args.headroom,
        input_tokens=args.input_tokens,
        load_factor=args.load_factor,
        prices=args.prices,
        target=args.target,
        replica_cost=args.replica_cost,
    )
    if inp.peak_rps is None and inp.peak_multiple is None:
        inp = PlanInput(**{**inp.__dict__, "peak_multiple": 10.0})
    if searched:
        result = _search_plan(args.dir, inp)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = analyse(args.dir, inp)
        if analysis.steps.empty:
            scenario = analysis.folder.meta.get("scenario") or "unknown-scenario"
            raise UsageError(
                f"relaybench plan: {args.dir} is a {scenario} run without load steps, so there is "
                "no highest load meeting the SLOs to plan from; plan needs a step run "
                "(relaybench run --scenario step --users N --out DIR) or a search folder "
                "(relaybench search --out DIR --slo-ttft-p95-ms X)"
            )
        result = analysis.plan or {}
    (args.dir / "plan.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else plan_markdown(result))
    return 0


def _search_plan(folder: Path, inp) -> dict:
    """The plan of one target of a search folder, from its counted probes."""
    from reports.capacity import choose_target
    from reports.search import load_search, search_plan

    doc = load_search(folder)
    name = choose_target(list(doc["targets"]), inp.target)
    result = search_plan(doc, name, inp)
    if result is None:
        raise UsageError(
            f"relaybench plan: the search of {name} in {folder} counted no probe "
            f"({doc['targets'][name].get('message') or 'no probes'}), so there is nothing to plan"
        )
    return result
