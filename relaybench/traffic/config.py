"""The traffic part of a run's configuration, handed to every Locust process with ``LoadConfig``.

``check`` runs in the orchestrator before anything starts: it reads the trace and builds the
whole schedule once, so a bad file, a window outside the trace or a bad policy is a usage error
(exit 2) and not a crash inside Locust. Each Locust process then rebuilds the same schedule from
the same seed and takes its share (``Schedule.share``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from relaybench.traffic import trace
from relaybench.traffic.retry import NONE, RetryPolicy
from relaybench.traffic.retry import check as check_policy
from relaybench.traffic.sessions import ChatConfig


@dataclass(frozen=True)
class TrafficConfig:
    trace: str | None = None  # --scenario trace: the file (None: the shipped Azure trace)
    trace_start_s: float = 0.0
    trace_window_s: float | None = None
    speedup: float = 1.0
    rate_scale: float = 1.0
    chat: ChatConfig = field(default_factory=ChatConfig)
    retry: RetryPolicy = NONE

    @property
    def trace_path(self) -> str:
        return self.trace or str(trace.default_path())

    def schedule(self, seed: int) -> trace.Schedule:
        """The whole run's trace schedule (every process builds the same one)."""
        return trace.build_schedule(
            trace.load(self.trace_path),
            start_s=self.trace_start_s,
            window_s=self.trace_window_s,
            speedup=self.speedup,
            rate_scale=self.rate_scale,
            seed=seed,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrafficConfig:
        chat = dict(raw.get("chat") or {})
        if "answer_tokens" in chat:
            chat["answer_tokens"] = tuple(chat["answer_tokens"])
        policy = dict(raw.get("retry") or asdict(NONE))
        policy["retry_on"] = tuple(policy.get("retry_on", ()))
        return cls(
            **{k: v for k, v in raw.items() if k not in ("chat", "retry")},
            chat=ChatConfig(**chat),
            retry=RetryPolicy(**policy),
        )

    def check(self) -> None:
        self.chat.check()
        check_policy(self.retry)
        trace.check_controls(
            start_s=self.trace_start_s,
            window_s=self.trace_window_s,
            speedup=self.speedup,
            rate_scale=self.rate_scale,
        )
