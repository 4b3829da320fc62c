"""Typed configuration handed from the orchestrator to the Locust process of one target.

The orchestrator (``relaybench.run.cli``) stays plain Python; each target runs in its own Locust
process (``python -m loadtests.worker CONFIG.json``), which reads this object back. Nothing in
the load generator reads globals or the environment, except the API key: the worker's entry point
takes it from ``RELAYBENCH_API_KEY`` (``relaybench.credentials``) so that no file holds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from relaybench import credentials
from relaybench.errors import UsageError
from relaybench.traffic.config import TrafficConfig

# Scenario names; their shapes over time are functions in ``loadtests.shapes``.
CLOSED_LOOP = ("steady", "step", "peak", "spike", "soak", "chat", "retry-storm")
OPEN_LOOP = ("constant", "poisson", "trace")
SCENARIOS = CLOSED_LOOP + OPEN_LOOP


@dataclass(frozen=True)
class ShapeParams:
    """The parameters of one scenario (recorded in run.json as ``scenario_params``)."""

    scenario: str
    users: int
    duration_s: float
    rate: float | None = None  # req/s for open-loop scenarios and rate steps
    steps: int = 5
    peak_multiple: float = 10.0
    chat_shape: str = "steady"  # --scenario chat: the closed-loop shape sessions in flight follow

    @property
    def open_loop(self) -> bool:
        return self.scenario in OPEN_LOOP or (self.scenario == "step" and self.rate is not None)

    @property
    def baseline(self) -> int:
        return max(1, round(self.users / self.peak_multiple))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open_loop": self.open_loop, "baseline_users": self.baseline}


@dataclass(frozen=True)
class Target:
    """One thing to measure. ``url`` is the API base (``http://h:p`` or ``http://h:p/v1``)."""

    name: str
    url: str
    stream: bool = True
    kind: str = "external"
    stamps: bool = False  # the upstream is our mock: chunks carry x_mock_emitted_ns
    # measured for comparison only (the default run's relay-buffered): its SLO verdict is
    # reported but does not set the exit code
    baseline: bool = False

    @property
    def chat_url(self) -> str:
        base = self.url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return base + "/chat/completions"

    def check(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = credentials.redact_url(self.url)
            raise UsageError(f"target {self.name}: {shown!r} is not an http(s) URL")
        if not self.name or "." in self.name or "/" in self.name:
            raise UsageError(f"target name {self.name!r}: use letters, digits, '-' or '_'")


@dataclass(frozen=True)
class LoadConfig:
    """Everything the Locust process of one target needs."""

    run_dir: str
    target: Target
    shape: ShapeParams
    seed: int = 1
    api_key: str | None = None
    processes: int = 1  # local Locust worker processes
    remote_workers: int = 0  # workers on other machines that connect to the master
    master_bind: str = "127.0.0.1"
    master_port: int = 0  # 0: a free port
    max_tokens: tuple[int, int] | None = (100, 200)
    model: str = "relaybench-mock"
    timeout_s: float = 60.0  # read timeout: no byte for this long ends the request
    connect_timeout_s: float = 10.0
    ca_file: str | None = None  # PEM of the CAs to trust for https targets (None: the system's)
    insecure: bool = False  # --insecure: no certificate or host name check at all
    stop_timeout_s: float = 60.0  # at the end, in-flight requests get this long to finish
    extra_headers: dict[str, str] = field(default_factory=dict)
    web: bool = False
    web_port: int = 8089
    progress_interval_s: float = 2.0
    traffic: TrafficConfig = field(default_factory=TrafficConfig)  # trace, chat, retry policy

    @property
    def distributed(self) -> bool:
        return self.processes > 1 or self.remote_workers > 0

    @property
    def generators(self) -> int:
        """Load-generating processes in all: the schedule and workload are split this many ways."""
        return self.processes + self.remote_workers if self.distributed else 1

    @property
    def path(self) -> Path:
        return Path(self.run_dir)

    def dump(self, path: Path) -> None:
        """Write the config without its API key: that goes to the Locust process in its
        environment (``relaybench.credentials.API_KEY_ENV``), never into a file."""
        data = asdict(self) | {"api_key": None}
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))

    @classmethod
    def load(cls, path: Path) -> LoadConfig:
        raw: dict[str, Any] = orjson.loads(path.read_bytes())
        raw["target"] = Target(**raw["target"])
        raw["shape"] = ShapeParams(**raw["shape"])
        raw["traffic"] = TrafficConfig.from_dict(raw.get("traffic") or {})
        if raw.get("max_tokens") is not None:
            raw["max_tokens"] = tuple(raw["max_tokens"])
        return cls(**raw)
