"""tools.drive_streams: back-to-back streams on keep-alive connections, every event counted."""

from __future__ import annotations

import httpx
import pytest

from tools import drive_streams


def test_streams_back_to_back_and_counts_every_event(start_server, capsys) -> None:
    mock = start_server("mock_upstream", "--ttft-ms", "0", "--itl-ms", "2")
    port = int(mock.url.rsplit(":", 1)[1])
    argv = ["--port", str(port), "--streams", "3", "--duration", "0.5", "--max-tokens", "5"]
    assert drive_streams.main(argv) == 0
    events = int(capsys.readouterr().out.split()[-1])
    stats = httpx.get(mock.url + "/mock/stats").json()
    # each stream: the role chunk, 5 tokens, the finish_reason chunk and [DONE]
    assert stats["completed"] >= 3 and events == stats["completed"] * 8, (events, stats)


def test_a_port_out_of_range_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        drive_streams.main(["--port", "70000"])
    assert exit_.value.code == 2 and "--port" in capsys.readouterr().err
