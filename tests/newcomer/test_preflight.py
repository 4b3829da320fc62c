"""Pre-flight: an open-loop run whose rate × E2E exceeds --users is warned about before it
starts, and its health names the in-flight cap, not the load generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relaybench.run import preflight
from relaybench.run.cli import parse
from tests.newcomer.conftest import load, run


def test_rate_beyond_the_cap_is_warned_and_named_in_health(start_server, tmp_path: Path) -> None:
    slow = start_server("mock_upstream", "--ttft-ms", "200", "--itl-ms", "20")
    out = tmp_path / "run"
    done = run("--target", f"direct={slow.url}", "--scenario", "constant", "--rate", "10",
               "--users", "2", "--duration", "3", "--max-tokens", "20",
               "--out", str(out))  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    warning = next(line for line in done.stderr.splitlines() if "in-flight cap" in line)
    assert warning.startswith("warning: --rate 10/s × expected E2E ")
    assert "(one request to direct)" in warning and "--users 2" in warning
    check = load(out / "run.json")["preflight"][0]
    assert check["target"] == "direct" and check["over_cap"] is True
    # one answer of the mock: its 200 ms TTFT + 20 tokens 20 ms apart, never faster (a lower bound)
    assert check["expected_e2e_s"] >= 0.5
    # and the check's arithmetic on that measurement: rate × E2E in flight, against --users 2
    assert abs(check["expected_in_flight"] - 10 * check["expected_e2e_s"]) <= 0.1
    assert check["in_flight_cap"] == 2 and check["rate"] == 10
    health = load(out / "summary.json")["health"]
    assert health["degraded"]
    rate_reason = next(r for r in health["reasons"] if "achieved" in r)
    assert "the in-flight cap was reached: all 2 users (--users) were busy" in rate_reason
    assert "the load generator did not deliver" not in rate_reason


def test_no_warning_within_the_cap_or_in_closed_loop(tmp_path: Path, capsys) -> None:
    plan = parse(["--scenario", "poisson", "--out", str(tmp_path / "a")])
    (check,) = preflight.check(plan)
    # the embedded mock's defaults: 500 ms, then 149 gaps of 25 ms = 4.225 s per answer
    assert check["expected_e2e_s"] == 4.225 and check["expected_in_flight"] == 21.1
    assert "Use --users 32" in capsys.readouterr().err
    plan = parse(["--scenario", "poisson", "--users", "40", "--out", str(tmp_path / "b")])
    assert preflight.check(plan)[0]["over_cap"] is False
    assert "warning" not in capsys.readouterr().err
    assert preflight.check(parse(["--users", "1", "--out", str(tmp_path / "c")])) == []


def test_peak_in_flight_sweeps_starts_against_ends() -> None:
    offsets = np.array([1.0, 0.0, 0.5, 3.0])
    e2e = np.array([2.0, 2.0, 2.0, 1.0])  # 0-2, 0.5-2.5, 1-3 overlap; 3-4 starts as 1-3 ends
    assert preflight.peak_in_flight(offsets, e2e) == (3, 1.0)
    # half-open intervals: one ending exactly as the next starts is no longer in flight
    assert preflight.peak_in_flight(np.array([0.0, 1.0]), np.array([1.0, 1.0])) == (1, 0.0)
    assert preflight.peak_in_flight(np.array([]), np.array([])) == (0, 0.0)


def test_a_trace_is_checked_on_its_own_schedule(tmp_path: Path, capsys) -> None:
    rows = "t_s,input_tokens,output_tokens\n" + "".join(
        f"{t / 10:g},100,{40 if t < 20 else 4}\n" for t in range(40)
    )
    path = tmp_path / "burst.csv"
    path.write_text(rows)
    # the embedded mock's default 500 ms, then 25 ms before each later token: 1.475 s answers
    # for the first 2 s of arrivals (10/s, so 15 at once), then 0.575 s answers
    plan = parse(["--scenario", "trace", "--trace", str(path), "--users", "10",
                  "--out", str(tmp_path / "a")])  # fmt: skip
    (check,) = preflight.check(plan)
    assert check["expected_peak_in_flight"] == 15 and check["over_cap"] is True
    assert check["in_flight_cap"] == 10 and plan.preflight == [check]
    warning = capsys.readouterr().err
    assert "the trace keeps about 15 requests in flight" in warning and "--users 23" in warning
    plan = parse(["--scenario", "trace", "--trace", str(path), "--users", "15",
                  "--out", str(tmp_path / "b")])  # fmt: skip
    assert preflight.check(plan)[0]["over_cap"] is False
    assert "warning" not in capsys.readouterr().err
    # a --duration that ends before the busy part: only the arrivals it sends count
    short = parse(["--scenario", "trace", "--trace", str(path), "--users", "10",
                   "--duration", "0.45", "--out", str(tmp_path / "d")])  # fmt: skip
    assert preflight.check(short)[0]["expected_peak_in_flight"] == 5
    remote = parse(["--scenario", "trace", "--trace", str(path), "--target",
                    "x=http://127.0.0.1:9", "--out", str(tmp_path / "c")])  # fmt: skip
    assert preflight.check(remote) == []
