"""The report's run metadata reads as text, not as Python reprs (``rate=None``)."""

from __future__ import annotations

from reports.tables import metadata_lines


def test_metadata_is_human_text() -> None:
    meta = {
        "scenario_params": {"scenario": "steady", "users": 10, "duration_s": 30.0, "rate": None,
                            "open_loop": False},
        "mock": {"ttft_ms": 500.0, "max_queue": None, "from_max_tokens": True},
        "targets": {"relay": {"kind": "relay", "url": "http://127.0.0.1:1", "stream": False}},
        "users": 10,
        "seed": 1,
    }  # fmt: skip
    run = {"scenario": "steady", "started_at": "2026-12-01T00:00:00+00:00", "duration_s": 30.0}
    lines = dict(metadata_lines(meta, run))
    assert lines["scenario"] == "steady: users 10, duration (s) 30, open loop no"
    assert lines["mock"] == "ttft (ms) 500, from max tokens yes"
    assert lines["target relay"] == "relay, http://127.0.0.1:1, buffered (stream: false)"
    text = " ".join(lines.values())
    assert "None" not in text and "=" not in text and "True" not in text
