"""``relaybench run`` with trace replay, chat sessions and client retries, end to end against the
real mock on 127.0.0.1 (a subprocess each, as users run it)."""

from __future__ import annotations

import itertools
import json
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from relaybench.traffic import sessions, trace
from relaybench.traffic.sessions import ChatConfig, Session
from tests.harness import RELAYBENCH, records, run


def summary(run_dir: Path, target: str = "direct") -> dict:
    return json.loads((run_dir / "summary.json").read_text())["targets"][target]


@pytest.fixture
def mock(start_server):
    return start_server(
        "mock_upstream", "--ttft-ms", "20", "--itl-ms", "2", "--output-from-max-tokens"
    )


def small_trace(tmp_path: Path, rows: list[str], header: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return p


def test_prompts_are_the_size_the_mock_counts(mock) -> None:
    for tokens in (3, 50, 374, 2000):
        body = {"model": "m", "messages": sessions.sized_messages(tokens, "k"), "max_tokens": 2}
        req = urllib.request.Request(
            mock.url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["usage"]["prompt_tokens"] == tokens


def test_trace_replay_across_two_processes(mock, tmp_path: Path) -> None:
    rows = [f"{i * 0.1:.1f},{20 + i},{3 + i % 5}" for i in range(30)]  # 30 arrivals in 2.9 s
    path = small_trace(tmp_path, rows, "t_s,input_tokens,output_tokens")
    out = tmp_path / "run"
    done = run(
        *("--target", f"direct={mock.url}", "--scenario", "trace", "--trace", str(path)),
        *("--rate-scale", "2", "--speedup", "1", "--processes", "2", "--seed", "4"),
        *("--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    assert "trace trace.csv: 60 arrivals" in done.stdout
    recs = records(out)
    assert len({r["worker"] for r in recs}) == 2
    # exactly the schedule built here with the same seed: none lost, none twice
    sched = trace.build_schedule(trace.load(path), rate_scale=2, seed=4)
    t0 = min(r["intended_ns"] for r in recs)
    got = sorted(((r["intended_ns"] - t0) / 1e9, r["trace_row"]) for r in recs)
    offsets = (sched.offset_s - sched.offset_s[0]).tolist()
    want = sorted(zip(offsets, sched.row.tolist(), strict=True))
    assert [row for _, row in got] == [row for _, row in want]
    np.testing.assert_allclose([o for o, _ in got], [o for o, _ in want], atol=2e-9)
    for r in recs:
        i = r["trace_row"]
        assert r["prompt_tokens"] == 20 + i and r["max_tokens"] == 3 + i % 5
        assert r["ok"] and r["output_tokens"] == r["max_tokens"]
        assert r["attempts"] == 1 and r["attempt_status"] is None
    assert summary(out)["requests"] == 60
    assert "retry_amplification" not in summary(out)
    assert (out / "arrivals_asked_vs_achieved.png").is_file()
    assert "arrivals asked vs achieved" in (out / "report.html").read_text()


def test_trace_sessions_send_the_conversation(mock, tmp_path: Path) -> None:
    rows = [f"{t},10,20,{s}" for t in range(3) for s in ("a", "b")]
    path = small_trace(tmp_path, rows, "t_s,input_tokens,output_tokens,session")
    out = tmp_path / "run"
    done = run(
        *("--target", f"direct={mock.url}", "--scenario", "trace", "--trace", str(path)),
        *("--processes", "2", "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    recs = records(out)
    assert len(recs) == 6
    for name in ("a", "b"):
        mine = sorted((r for r in recs if r["session"] == name), key=lambda r: r["turn"])
        assert [r["turn"] for r in mine] == [0, 1, 2]
        assert len({r["worker"] for r in mine}) == 1  # one process holds the conversation
        sizes = [r["prompt_tokens"] for r in mine]
        assert sizes[0] == 10 and sizes[0] < sizes[1] < sizes[2]  # earlier answers included


def test_chat_sessions_grow_and_think(mock, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run(
        *("--target", f"direct={mock.url}", "--scenario", "chat", "--users", "4"),
        *("--processes", "2"),
        *("--duration", "5", "--max-tokens", "10-30", "--chat-turns", "3"),
        *("--think-read", "0.005", "--think-type", "0.002", "--seed", "9", "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    recs = records(out)
    by_session: dict[str, list[dict]] = {}
    for r in recs:
        by_session.setdefault(r["session"], []).append(r)
    assert len(by_session) >= 4
    # process n of 2 runs sessions n, n+2, ...: one parity per process, none run twice
    parity = {r["worker"]: set() for r in recs}
    for r in recs:
        parity[r["worker"]].add(int(r["session"]) % 2)
    assert sorted(parity.values(), key=min) == [{0}, {1}]
    assert all(len({r["worker"] for r in turns}) == 1 for turns in by_session.values())
    cfg = ChatConfig(
        turns_median=3, read_s_per_token=0.005, type_s_per_char=0.002, answer_tokens=(10, 30)
    )
    checked = 0
    for sid, turns in by_session.items():
        turns.sort(key=lambda r: r["turn"])
        assert [r["turn"] for r in turns] == list(range(len(turns)))
        plan = Session(cfg, 9, int(sid))
        assert len(turns) <= len(plan)
        assert [r["max_tokens"] for r in turns] == [t.max_tokens for t in plan.turns[: len(turns)]]
        sizes = [r["prompt_tokens"] for r in turns]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)  # grows every turn
        for before, after in itertools.pairwise(turns):
            think = plan.think_s(after["turn"], before["output_tokens"])
            ended_ns = before["start_ns"] + before["e2e_ms"] * 1e6
            assert after["start_ns"] - ended_ns >= think * 1e9 - 1e6  # not before its think time
            checked += 1
    assert checked >= 3
    assert (out / "latency_by_turn.png").is_file()
    assert not (out / "arrivals_asked_vs_achieved.png").exists()


def policy(tmp_path: Path, text: str) -> str:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return str(p)


def retry_run(mock, tmp_path: Path, fault: str, *policy_args: str, users: int = 2) -> list[dict]:
    out = tmp_path / "run"
    done = run(
        *("--target", f"direct={mock.url}", "--users", str(users), "--duration", "1.5"),
        *("--max-tokens", "5", "--header", f"X-Mock-Fault:{fault}", *policy_args),
        *("--out", str(out)),
    )
    assert done.returncode in (0, 1), done.stderr
    # a request still going when the run's window closed is written as 'interrupted'
    return [r for r in records(out) if r["error"] != "interrupted"]


def test_seed_policy_honours_retry_after_on_429(mock, tmp_path: Path) -> None:
    recs = retry_run(mock, tmp_path, "status:429", "--retry-policy", "seed")
    assert recs
    for r in recs:
        assert r["attempts"] == 4 and r["attempt_status"] == [429] * 4
        assert r["attempt_error"] == ["http_429"] * 4 and r["error"] == "http_429"
        waits = r["attempt_wait_ms"]
        assert waits[0] == 0
        for k, cap in ((1, 1.0), (2, 2.0), (3, 4.0)):
            assert 1000 <= waits[k] <= max(1000, cap * 1000)  # max(Retry-After 1 s, U(0, cap))
        starts = r["attempt_start_ms"]
        for k in (1, 2, 3):  # each attempt started after the previous ended and the wait
            assert starts[k] - starts[k - 1] >= waits[k]
        assert r["e2e_ms"] >= starts[3]  # timed from the first attempt
    s = summary(tmp_path / "run")
    # the summary leaves 'interrupted' ones out (counted apart), as retry_run does
    assert s["attempts"] == sum(r["attempts"] for r in recs)
    assert s["retry_amplification"] == round(s["attempts"] / len(recs), 6)
    assert s["retry_amplification"] > 3
    assert s["user_error_rate"] == 1.0 and s["attempt_error_rate"] == 1.0
    assert s["attempts_per_request"]["4"] == len(recs)
    assert (tmp_path / "run" / "retry_amplification.png").is_file()
    limits = tmp_path / "limits.toml"
    limits.write_text('[direct]\n"retry_amplification" = "<= 1.5"\n"user_error_rate" = "<= 1"\n')
    gate = subprocess.run(
        [*RELAYBENCH, "gate", str(tmp_path / "run"), "--thresholds", str(limits)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "FAIL  direct  retry_amplification" in gate.stdout
    assert "PASS  direct  user_error_rate" in gate.stdout


def test_503_full_jitter_within_the_caps(mock, tmp_path: Path) -> None:
    knobs = policy(tmp_path, "base_s = 0.05\nmax_retries = 3\n")
    recs = retry_run(mock, tmp_path, "status:503", "--retry-policy", knobs)
    assert recs
    for r in recs:
        assert r["attempts"] == 4 and r["attempt_status"] == [503] * 4
        for k, cap in ((1, 50), (2, 100), (3, 200)):
            assert 0 <= r["attempt_wait_ms"][k] <= cap


def test_a_cut_before_content_is_retried_after_content_never(mock, tmp_path: Path) -> None:
    knobs = policy(tmp_path, "base_s = 0.02\n")
    before = retry_run(mock, tmp_path / "a", "disconnect-after:0", "--retry-policy", knobs, users=1)
    # the run stops a target whose first 20 requests all failed: the request it cut is the last
    done = [r for r in before if r["seq"] < max(r["seq"] for r in before)]
    assert len(done) >= 5 and all(r["attempts"] == 4 for r in done)
    assert all(r["attempt_error"] == ["truncated"] * 4 for r in done)
    after = retry_run(mock, tmp_path / "b", "disconnect-after:2", "--retry-policy", knobs)
    assert after and all(r["attempts"] == 1 and r["content_chunks"] == 2 for r in after)
    assert all(r["error"] == "truncated" for r in after)
    # the summary counts the attempts of every request but those the run's window cut off
    # ('interrupted', counted apart), which is what ``after`` holds
    every = records(tmp_path / "b" / "run")
    counted = summary(tmp_path / "b" / "run")
    assert counted["attempts"] == sum(r["attempts"] for r in after)
    assert counted["interrupted"] == len(every) - len(after)


def test_no_policy_sends_once(mock, tmp_path: Path) -> None:
    recs = retry_run(mock, tmp_path, "status:503")
    assert recs and all(r["attempts"] == 1 and r["attempt_status"] is None for r in recs)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scenario", "trace", "--trace", "{tmp}/missing.csv"], "missing.csv: no such file"),
        (["--scenario", "trace", "--trace", "{tmp}/empty.csv"], "empty.csv: empty file"),
        (["--scenario", "trace", "--trace", "{tmp}/bad.csv"], "line 3: input_tokens: 'x'"),
        (["--scenario", "trace", "--trace-start", "2h"], "after the trace's last arrival"),
        (["--scenario", "trace", "--speedup", "0"], "--speedup"),
        (["--scenario", "trace", "--rate-scale", "-1"], "--rate-scale"),
        (["--scenario", "trace", "--rate", "3"], "--rate: not with --scenario trace"),
        (["--scenario", "trace", "--max-tokens", "50"], "--max-tokens: not with --scenario trace"),
        (["--scenario", "steady", "--speedup", "2"], "--speedup: only with --scenario trace"),
        (["--scenario", "peak", "--chat-turns", "4"], "--chat-turns: only with --scenario chat"),
        (["--retry-policy", "often"], "not 'none', 'seed' or a readable TOML file"),
        (["--retry-policy", "{tmp}/p.toml"], "unknown key 'tries'"),
    ],
)
def test_bad_traffic_input_exits_2_before_anything(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad.csv").write_text("t_s,input_tokens,output_tokens\n0,1,1\n1,x,1\n")
    (tmp_path / "p.toml").write_text("tries = 3\n")
    out = tmp_path / "out"
    done = run(*[a.replace("{tmp}", str(tmp_path)) for a in args], "--out", str(out), timeout=30)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert needle in done.stderr and done.stderr.count("\n") == 1
    assert not out.exists()
