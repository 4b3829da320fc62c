"""Run README.md's ```sh blocks as a newcomer would, on loopback (issue 12, item 7).

``python -m tests.readme.runner [LINE|WORD ...]`` runs every block (or the blocks starting at
those README lines, or holding those words) and prints one line per block;
``tests/readme/test_readme_examples.py`` runs each block as a test. The rules, also summed up
in the README's Development section:

- A block runs in ``bash -e -o pipefail`` in a scratch folder that looks like a fresh clone (each
  top-level entry of the checkout linked, ``runs/`` and other generated files left out), with
  ``.venv/bin`` off ``PATH``: a bare ``relaybench`` fails unless the block activates the venv.
- ``<!-- readme-test: skip (why) -->`` just above a block skips it; ``<!-- readme-test:
  skip-line PREFIX (why) -->`` skips the block's commands that start with PREFIX. A marker
  without a reason in parentheses is an error.
- A command ending in ``&`` is a server: it starts in its own process group and the runner waits
  for its ``listening on http://H:P`` line; ``PORT`` in later commands is that port. Every server
  is stopped by PID (SIGTERM to its group, SIGKILL after 10 s) when the block ends, pass or fail.
- Fixed loopback ports (``127.0.0.1:N``, ``localhost:N``, ``--port N``, ``--mock-port N``,
  ``--web-port N``) are replaced, each number consistently, by a free port the OS chose.
- Load is shortened: ``--duration X`` becomes ``README_TEST_DURATION`` (default 3) seconds,
  ``--users N`` is capped at ``README_TEST_USERS`` (10), a ``relaybench search`` without
  ``--max-probes`` gets ``--max-probes 2``, make's ``DURATION``/``USERS`` come from the same
  knobs and ``SEARCH_ARGS`` is ``--max-probes 2``. Two probes rarely bracket a capacity, so a
  search may exit 1 (no capacity found) without failing the block; exit 2 still fails it.
- ``curl`` fails on an HTTP error status (``--fail-with-body``) and after 30 s.
- A block has ``README_TEST_TIMEOUT`` (default 300) seconds; a failure names the README line of
  the command that failed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LEFT_OUT = {"runs", ".git", ".pytest_cache", ".ruff_cache", "keys.json", "relay-keys.json"}

DURATION = os.environ.get("README_TEST_DURATION", "3")
USERS = int(os.environ.get("README_TEST_USERS", "10"))
TIMEOUT_S = float(os.environ.get("README_TEST_TIMEOUT", "300"))
LISTEN_TIMEOUT_S = 60.0

_MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<kind>skip-line|skip)\s*(?P<rest>.*?)\s*-->")
_REASON = re.compile(r"^(?:(?P<prefix>\"[^\"]+\"|\S+)\s+)?\((?P<why>[^)]+)\)$")
_BACKGROUND = re.compile(r"(?<![&|])&\s*(?:#.*)?$")
_LISTENING = re.compile(r"listening on https?://[^\s:]+:(\d+)")
_FIXED_PORT = re.compile(r"(?:(?<=127\.0\.0\.1:)|(?<=localhost:)|(?<=--port )|(?<=--mock-port )"
                         r"|(?<=--web-port ))([1-9]\d{3,4})\b")  # fmt: skip


@dataclass
class Command:
    line: int  # README line where the command starts
    text: str  # one logical line (continuations joined)
    background: bool = False


@dataclass
class Block:
    line: int  # README line of the opening ```sh
    commands: list[Command]
    skip: str | None = None  # the reason, when the whole block is skipped
    skipped_lines: list[tuple[str, str]] = field(default_factory=list)  # (prefix, reason)


class ReadmeError(Exception):
    """A block failed; the message names the README line."""


def blocks(text: str | None = None) -> list[Block]:
    """Every ```sh block of the README with its markers and logical commands."""
    lines = (README.read_text() if text is None else text).splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```sh":
            i += 1
            continue
        start = i
        body: list[tuple[int, str]] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append((i + 1, lines[i]))
            i += 1
        block = Block(start + 1, _logical(body))
        _markers(lines, start, block)
        out.append(block)
        i += 1
    return out


def _markers(lines: list[str], start: int, block: Block) -> None:
    j = start - 1
    while j >= 0 and (lines[j].strip() == "" or _MARKER.search(lines[j])):
        match = _MARKER.search(lines[j])
        if match:
            reason = _REASON.match(match["rest"])
            if reason is None or (match["kind"] == "skip-line") != bool(reason["prefix"]):
                raise ReadmeError(
                    f"README.md line {j + 1}: a readme-test marker needs a reason: "
                    "<!-- readme-test: skip (why) --> or "
                    '<!-- readme-test: skip-line "PREFIX" (why) -->'
                )
            if match["kind"] == "skip":
                block.skip = reason["why"]
            else:
                block.skipped_lines.append((reason["prefix"].strip('"'), reason["why"]))
        j -= 1


def _logical(body: list[tuple[int, str]]) -> list[Command]:
    commands: list[Command] = []
    pending: tuple[int, str] | None = None
    for number, raw in body:
        if pending is not None:
            text = pending[1] + " " + raw.strip()
            start = pending[0]
        else:
            text, start = raw.strip(), number
        if text.endswith("\\"):
            pending = (start, text[:-1].rstrip())
            continue
        pending = None
        if not text or text.startswith("#"):
            continue
        background = bool(_BACKGROUND.search(_strip_comment(text)))
        if background:
            text = _BACKGROUND.sub("", _strip_comment(text)).rstrip()
        commands.append(Command(start, text, background))
    return commands


def _strip_comment(text: str) -> str:
    """The command without a trailing ``# comment`` (quotes respected)."""
    quote = None
    for k, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or text[k - 1].isspace()):
            return text[:k].rstrip()
    return text


# -- running -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shorten(text: str) -> str:
    """The same command with the load the README test can afford (see the module docstring)."""
    text = re.sub(r"--duration[ =]\S+", f"--duration {DURATION}", text)
    text = re.sub(r"--users[ =](\d+)", lambda m: f"--users {min(int(m[1]), USERS)}", text)
    if re.search(r"\brelaybench search\b", text) and "--max-probes" not in text:
        text = _strip_comment(text) + " --max-probes 2"
    if re.search(r"\brelaybench search\b|\bmake bench-search\b", text):
        # two probes rarely bracket the capacity: exit 1 (none found) is the shortening's doing
        text = "{ " + _strip_comment(text) + "; } || [ $? -eq 1 ]"
    return text


def ensure_setup() -> None:
    """Bring the checkout's venv up to date in the checkout itself, never from a scratch folder.

    ``make`` in a scratch folder reinstalls when ``.venv/.installed`` is older than
    ``pyproject.toml``, and ``pip install -e .`` there would point the shared venv's editable
    install (and its scripts' ``#!``) at the scratch folder, which is deleted afterwards.
    """
    stamp, project = ROOT / ".venv" / ".installed", ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < project.stat().st_mtime:
        subprocess.run(["make", "-s", "setup"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def _venv_intact() -> None:
    first = (ROOT / ".venv" / "bin" / "relaybench").read_text().splitlines()[0]
    if not first.startswith(f"#!{ROOT}"):
        raise ReadmeError(f"the block reinstalled the shared venv elsewhere ({first}); "
                          "run make setup in the checkout")  # fmt: skip


def scratch(root: Path) -> Path:
    """A folder that looks like a fresh clone: the checkout's entries linked, no outputs."""
    for entry in ROOT.iterdir():
        if entry.name not in LEFT_OUT | {"pyproject.toml"}:
            (root / entry.name).symlink_to(entry)
    # a copy dated 1970: make never reinstalls from here, even if pyproject.toml changes mid-run
    project = root / "pyproject.toml"
    project.write_bytes((ROOT / "pyproject.toml").read_bytes())
    os.utime(project, (0, 0))
    return root


def _environment() -> dict[str, str]:
    venv_bin = str(ROOT / ".venv" / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST"))}
    env.update(PATH=os.pathsep.join(path), DURATION=DURATION, USERS=str(USERS),
               SEARCH_ARGS="--max-probes 2")  # fmt: skip
    env.pop("RELAYBENCH_API_KEY", None)
    return env


_PREAMBLE = """set -a
trap 'echo "readme-test: README.md line $README_LINE failed (exit $?)" >&2' ERR
curl() { command curl --fail-with-body --max-time 30 "$@"; }
"""


class Server:
    """A background command: its process group, its output, the port it announced."""

    def __init__(self, command: Command, text: str, cwd: Path, env: dict[str, str], log) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            ["bash", "-c", text],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, text=True,
        )  # fmt: skip
        self.port: int | None = None
        self._ready = threading.Event()
        self._log = log
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log(f"[{self.command.line}] {line}")
            match = _LISTENING.search(line)
            if match and self.port is None:
                self.port = int(match[1])
                self._ready.set()
        self._ready.set()

    def wait_listening(self, deadline: float) -> int:
        self._ready.wait(max(0.0, min(LISTEN_TIMEOUT_S, deadline - time.monotonic())))
        if self.port is None:
            state = "exited" if self.proc.poll() is not None else "printed no listening line"
            raise ReadmeError(
                f"README.md line {self.command.line}: the server {state} (`{self.command.text}`)"
            )
        return self.port

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass


def run_block(block: Block, work: Path) -> str:
    """Run one block in ``work`` (a scratch clone); returns its output, raises ReadmeError."""
    ensure_setup()
    output: list[str] = []
    log = output.append
    env = _environment()
    ports = {n: free_port() for n in _fixed_ports(block)}
    servers: list[Server] = []
    pending: list[Command] = []
    deadline = time.monotonic() + TIMEOUT_S

    def render(command: Command) -> str:
        text = _FIXED_PORT.sub(lambda m: str(ports[m[1]]), command.text)
        if servers and servers[-1].port is not None:
            text = re.sub(r"\bPORT\b", str(servers[-1].port), text)
        return shorten(text)

    try:
        for command in block.commands:
            if any(command.text.startswith(prefix) for prefix, _ in block.skipped_lines):
                log(f"[{command.line}] skipped by marker: {command.text}\n")
                continue
            if not command.background:
                pending.append(command)
                continue
            env = _segment(pending, render, work, env, deadline, log)
            pending = []
            log(f"[{command.line}] $ {render(command)} &\n")
            server = Server(command, render(command), work, env, log)
            servers.append(server)
            server.wait_listening(deadline)
        _segment(pending, render, work, env, deadline, log)
    except ReadmeError as exc:
        raise ReadmeError(f"{exc}\n--- output (last 60 lines) ---\n" + _tail(output)) from None
    finally:
        for server in reversed(servers):
            server.stop()
    _venv_intact()
    return "".join(output)


def _fixed_ports(block: Block) -> list[str]:
    return sorted({m[1] for c in block.commands for m in _FIXED_PORT.finditer(c.text)})


def _segment(commands, render, work: Path, env: dict[str, str], deadline: float, log):
    """Run foreground commands in one bash; returns the environment they leave behind."""
    if not commands:
        return env
    env_file = work / ".readme-test-env"
    script = (
        _PREAMBLE
        + "".join(f"README_LINE={c.line}\n{render(c)}\n" for c in commands)
        + f"env -0 > {shlex.quote(str(env_file))}\n"
    )
    for c in commands:
        log(f"[{c.line}] $ {render(c)}\n")
    proc = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        log(out)
        raise ReadmeError(
            f"README.md line {commands[0].line}: the block ran out of its {TIMEOUT_S:.0f} s"
        ) from None
    except BaseException:  # a test timeout, Ctrl-C: nothing the block started stays behind
        _kill_group(proc)
        raise
    log(out)
    if proc.returncode != 0:
        failed = re.findall(r"readme-test: README.md line (\d+) failed", out)
        line = failed[-1] if failed else str(commands[0].line)
        raise ReadmeError(f"README.md line {line}: exit {proc.returncode}")
    pairs = env_file.read_text().split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(output: list[str], n: int = 60) -> str:
    return "".join("".join(output).splitlines(keepends=True)[-n:])


def main(argv: list[str]) -> int:
    """``LINE`` runs the block starting at that README line, any other word the blocks with it."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop servers
    failed = 0
    for block in blocks():
        texts = " ".join(c.text for c in block.commands)
        if argv and not any(a == str(block.line) or (not a.isdigit() and a in texts) for a in argv):
            continue
        if block.skip:
            print(f"SKIP  line {block.line}: {block.skip}")
            continue
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
            try:
                run_block(block, scratch(Path(tmp)))
                print(f"PASS  line {block.line} ({time.monotonic() - started:.0f} s)")
            except ReadmeError as exc:
                failed += 1
                print(f"FAIL  line {block.line}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
