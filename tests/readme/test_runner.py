"""The README runner itself: what it parses, and that a broken block fails at its line."""

from __future__ import annotations

import socket

import pytest

from tests.readme import runner

TEXT = """intro

<!-- readme-test: skip (needs a remote host) -->
```sh
ssh far.example
```

<!-- readme-test: skip-line "make test" (the whole suite) -->
```sh
make test
X=1 \\
  Y=2   # a comment
srv --port 8001 &   # background
```
"""


def test_blocks_markers_continuations_and_background():
    skipped, mixed = runner.blocks(TEXT)
    assert (skipped.line, skipped.skip) == (4, "needs a remote host")
    assert mixed.skipped_lines == [("make test", "the whole suite")]
    assert [(c.line, c.text, c.background) for c in mixed.commands] == [
        (10, "make test", False),
        (11, "X=1 Y=2   # a comment", False),
        (13, "srv --port 8001", True),
    ]


def test_a_marker_without_a_reason_is_an_error():
    with pytest.raises(runner.ReadmeError, match=r"line 1: a readme-test marker needs a reason"):
        runner.blocks("<!-- readme-test: skip -->\n```sh\ntrue\n```\n")


def test_load_is_shortened_but_flags_stay():
    text = runner.shorten("relaybench run --users 100 --duration 20m --scenario step")
    assert (
        text
        == f"relaybench run --users {runner.USERS} --duration {runner.DURATION} --scenario step"
    )
    search = runner.shorten("relaybench search --probe-s 10  # find it")
    assert search == "{ relaybench search --probe-s 10 --max-probes 2; } || [ $? -eq 1 ]"


def _block(body: str) -> runner.Block:
    (block,) = runner.blocks(f"```sh\n{body}```\n")
    return block


def test_a_failing_command_names_its_readme_line(tmp_path):
    with pytest.raises(runner.ReadmeError, match=r"README\.md line 3: exit 1"):
        runner.run_block(_block("true\nfalse\necho never\n"), tmp_path)


def test_variables_carry_over_a_background_server_and_port_is_substituted(tmp_path):
    server = (
        "python3 -c \"import socket,sys;s=socket.socket();s.bind(('127.0.0.1',0));s.listen();"
        "print('listening on http://127.0.0.1:%d' % s.getsockname()[1], flush=True);"
        "c,_=s.accept();c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nhello');c.close()\" &\n"
    )
    block = _block("WORD=hello\n" + server + 'test "$(command curl -s localhost:PORT)" = "$WORD"\n')
    out = runner.run_block(block, tmp_path)
    assert "listening on http://127.0.0.1:" in out


def test_fixed_ports_become_free_ports_consistently(tmp_path):
    block = _block("echo 127.0.0.1:8001 --port 8001 --mock-port 8080 > ports.txt\n")
    runner.run_block(block, tmp_path)
    first, _, second, _, third = (tmp_path / "ports.txt").read_text().split()
    port = first.split(":")[1]
    assert port == second != "8001" and third != "8080"
    with socket.socket() as sock:  # the OS handed it out, so it is free again
        sock.bind(("127.0.0.1", int(port)))


def test_curl_fails_on_an_http_error_status(tmp_path):
    server = (
        "python3 -c \"import socket;s=socket.socket();s.bind(('127.0.0.1',0));s.listen();"
        "print('listening on http://127.0.0.1:%d' % s.getsockname()[1], flush=True);"
        "c,_=s.accept();c.recv(1000);"
        "c.sendall(b'HTTP/1.0 502 Bad Gateway\\r\\n\\r\\nno');c.close()\" &\n"
    )
    with pytest.raises(runner.ReadmeError, match=r"README\.md line 3: exit 22"):
        runner.run_block(_block(server + "curl -s localhost:PORT/x\n"), tmp_path)
