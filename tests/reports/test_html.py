"""reports.html.render: the one Jinja2 environment every page renders through."""

from __future__ import annotations

import jinja2
import pytest

from reports.html import render


def test_a_missing_value_is_an_error_not_an_empty_cell() -> None:
    with pytest.raises(jinja2.UndefinedError, match="'run' is undefined"):
        render("report.html.j2")


def test_values_are_escaped() -> None:
    page = render(
        "report.html.j2",
        run={"scenario": "<b>x</b>", "started_at": "t", "duration_s": 1},
        health={"degraded": False, "loadgen_cpu_max_pct": 1, "checked": []},
        notes=[], leaks=[], server_note="", tables={k: None for k in (
            "overhead", "calibration", "response", "errors", "causes", "server")}
        | {"verdict": ([], []), "results": ([], [])},
        calibration_sentence=None, charts=[], plan=None, metadata=[], folder="f",
    )  # fmt: skip
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
