"""The reference proxy of ``make bench-relay``, nginx: configured here, started and stopped by PID.

The configuration lives in a private temp dir: one worker process (the bundled relay is one
process too), a keep-alive upstream pool to the mock, ``proxy_buffering off`` (each upstream
read is passed on as it arrives, as the relay does), no access log, and every path nginx
writes (pid, error log, temp dirs) inside that dir. It listens on a free loopback port. The
master is an owned child (it dies with us); ``stop`` sends SIGQUIT (graceful), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from relaybench.errors import RelaybenchError, UsageError
from relaybench.procs import owned_child, owned_command

CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream mock {{
        server {upstream};
        keepalive 512;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """The nginx executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise UsageError("nginx is not installed (python tools/ensure_binaries.py installs it)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    """A private nginx proxying ``upstream_url`` (``http://host:port``) without buffering."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise UsageError(
                f"nginx reference: need an http://host:port upstream, not {upstream_url!r}"
            )
        self.upstream = f"{parts.hostname}:{parts.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        binary = nginx_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="relaybench-nginx-")
        folder = Path(self._dir.name)
        for attempt in range(3):  # the free port may be taken between our probe and nginx's bind
            port = _free_port()
            conf = folder / "nginx.conf"
            conf.write_text(CONF.format(dir=folder, upstream=self.upstream, port=port))
            command = [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
            self.proc = subprocess.Popen(
                owned_command(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **owned_child(),
            )
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_ready(timeout_s):
                return
            self.stop(keep_dir=True)
            if attempt == 2:
                log = (folder / "error.log").read_text(errors="replace")[-800:]
                self._cleanup()
                raise RelaybenchError(f"nginx did not start; its error log ends:\n{log}")

    def _wait_ready(self, timeout_s: float) -> bool:
        """Until a request through nginx reaches the upstream's /health."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1.0) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the master and its workers so far."""
        if self.proc is None:
            return 0.0
        try:
            master = psutil.Process(self.proc.pid)
            processes = [master, *master.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self, *, keep_dir: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                workers = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                workers = []
            os.kill(proc.pid, signal.SIGQUIT)  # graceful: the workers finish and exit
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)  # workers outlive a killed master: them too
                proc.wait()
                for worker in workers:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        worker.kill()
        if not keep_dir:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
