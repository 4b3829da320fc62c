"""Charts a newcomer can read (issue 12): a 0-based errors axis that says "no errors", legends
beside the data rather than over it, and p50/p95/p99 in distinct colours."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from reports import charts


@pytest.fixture
def figures(monkeypatch):
    """The figures the chart functions draw, kept open instead of saved."""
    drawn = []

    def keep(fig, path):
        drawn.append(fig)
        return path

    monkeypatch.setattr(charts, "_save", keep)
    yield drawn
    for fig in drawn:
        charts.plt.close(fig)


def series(errors: float) -> pd.DataFrame:
    rows = []
    for target in ("direct", "relay"):
        for second in range(10):
            rows.append({"target": target, "second": second, "users": 10, "requests": 20,
                         "ttft_p95": 300.0 + second, "errors": errors})  # fmt: skip
    return pd.DataFrame(rows)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _legends_clear_of_their_axes(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    for ax, legend in legends:
        assert not _overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer))


def test_no_errors_is_said_on_a_zero_based_axis(figures, tmp_path):
    charts.peak_timeline(series(0.0), tmp_path / "t.png")
    errors_ax = figures[0].axes[3]
    assert errors_ax.get_ylim() == (0.0, 1.0)  # not -0.05..0.05 around a flat zero line
    assert "no errors" in [t.get_text() for t in errors_ax.texts]
    for ax in figures[0].axes[:2]:  # users and requests/s start at 0 too
        assert ax.get_ylim()[0] == 0.0


def test_an_all_zero_server_row_is_drawn_on_0_to_1(figures, tmp_path):
    rows = series(0.0)
    rows["rate_limited_per_s:relay"] = 0.0
    rows["cpu_pct:relay"] = 5.0
    charts.peak_timeline(rows, tmp_path / "t.png")
    cpu_ax, limited_ax = figures[0].axes[4], figures[0].axes[5]
    assert limited_ax.get_ylim() == (0.0, 1.0)
    assert cpu_ax.get_ylim()[0] < 5.0 < cpu_ax.get_ylim()[1]


def test_errors_keep_their_scale_and_no_label(figures, tmp_path):
    charts.peak_timeline(series(3.0), tmp_path / "t.png")
    errors_ax = figures[0].axes[3]
    assert errors_ax.get_ylim()[0] == 0.0 and errors_ax.get_ylim()[1] >= 3.0
    assert "no errors" not in [t.get_text() for t in errors_ax.texts]


def test_legends_sit_beside_the_data(figures, tmp_path):
    rng = np.random.default_rng(0)
    values = {n: rng.lognormal(5, 0.3, 300) for n in ("direct", "relay", "relay-buffered")}
    charts.ttft_cdf(values, tmp_path / "a.png")
    charts.peak_timeline(series(1.0), tmp_path / "b.png")
    charts.itl_distribution({"relay": rng.lognormal(3, 0.2, 500)}, tmp_path / "c.png")
    charts.cdf_overlay({"relay": (values["relay"], values["direct"])}, ("A", "B"),
                       tmp_path / "d.png")  # fmt: skip
    errors = pd.DataFrame({"target": ["relay"] * 3, "second": [0, 1, 2],
                           "error": ["http_429"] * 3, "count": [1, 2, 1]})  # fmt: skip
    charts.errors_over_time(errors, tmp_path / "e.png")
    charts.latency_vs_load(steps(), tmp_path / "f.png", slo_ms=1000, knees={"relay": 20})
    for fig in figures:
        _legends_clear_of_their_axes(fig)


def steps() -> pd.DataFrame:
    users = np.array([5, 10, 20, 40])
    p50 = np.array([200.0, 210, 400, 1200])
    return pd.DataFrame({
        "target": "relay", "users": users, "ttft_p50": p50, "ttft_p95": p50 * 1.5,
        "ttft_p99": p50 * 1.8, "ttft_p95_low": p50 * 1.4, "ttft_p95_high": p50 * 1.6,
        "rps": [10.0, 20, 29, 28],
    })  # fmt: skip


def test_p50_p95_p99_have_distinct_colours(figures, tmp_path):
    charts.latency_vs_load(steps(), tmp_path / "f.png", slo_ms=1000, knees={"relay": 20})
    ax = figures[0].axes[0]
    by_label = {line.get_label(): mcolors.to_hex(line.get_color()) for line in ax.get_lines()}
    colours = [by_label["ttft_p50"], by_label["ttft_p95"], by_label["ttft_p99"]]
    assert len(set(colours)) == 3
    slo = next(c for label, c in by_label.items() if label.startswith("SLO"))
    assert slo not in colours  # the SLO line stays its own colour
