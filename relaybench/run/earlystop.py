"""Stop a target early when its first ``FIRST_N`` requests all failed the same way.

A wrong key (401), a wrong path (404), a relay pointed at the wrong upstream (502) or a target
that refuses connections fails every request identically; running the whole duration only
repeats it. The orchestrator calls ``EarlyStop.check`` while the target runs: it reads the
records the Locust processes append (``records/<target>.*.jsonl``, flushed every 0.5 s) and,
once ``FIRST_N`` have ended, returns their one shared cause (``relaybench.records.cause``) when
none succeeded and all share it, else None for good. Rate limiting (``http_429``) is a result
to measure, not a misconfiguration, so it never stops a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from relaybench import records

FIRST_N = 20
NEVER = (records.HTTP_429,)


@dataclass(frozen=True)
class Verdict:
    cause: str
    error: str
    requests: int

    def as_dict(self) -> dict[str, object]:
        return {"cause": self.cause, "error": self.error, "requests": self.requests}


class EarlyStop:
    """Watches one target's first records (see the module docstring)."""

    def __init__(self, run_dir: Path, target: str, first_n: int = FIRST_N) -> None:
        self.folder = Path(run_dir) / "records"
        self.target = target
        self.first_n = first_n
        self._offsets: dict[Path, int] = {}
        self._seen: list[tuple[str, str]] = []  # (cause, error) of the first records
        self._decided = False

    def check(self) -> Verdict | None:
        """The shared cause once ``first_n`` records all failed alike; None otherwise."""
        if self._decided:
            return None
        for path in sorted(self.folder.glob(f"{self.target}.*.jsonl")):
            for rec in self._new_records(path):
                if rec.get("ok") or rec.get("error") in NEVER:
                    self._decided = True
                    return None
                cause = records.cause(rec.get("error"), rec.get("status"), rec.get("error_detail"))
                self._seen.append((cause, str(rec.get("error") or records.UNKNOWN)))
        if len(self._seen) < self.first_n:
            return None
        self._decided = True
        first = self._seen[: self.first_n]
        if len(set(first)) != 1:
            return None
        cause, error = first[0]
        return Verdict(cause, error, self.first_n)

    def _new_records(self, path: Path) -> list[dict]:
        """Complete lines appended since the last read (a torn last line waits)."""
        start = self._offsets.get(path, 0)
        try:
            with path.open("rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offsets[path] = start + end
        out = []
        for line in data[:end].splitlines():
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out
