"""The search: pure logic over a ``Probe`` callable, so every path is unit-tested with fakes.

1. **Bracket.** Probe ``start``; while it passes, double the load. The first failure closes the
   bracket ``[last pass, first fail]``. A failure at ``start`` itself ends the search: the
   capacity is *below --start* (an answer, not an error).
2. **Bisect** the bracket until ``(hi - lo) / lo <= precision`` or ``max_probes`` probes ran
   (users are whole numbers: the bracket cannot shrink below one user).
3. **Confirm**: one probe at the found load, twice as long. A failure there counts like any other
   failure, so the capacity falls back to the next lower passing load (unconfirmed).

A probe's verdict is ``pass``, ``fail`` or ``inconclusive`` (an SLO's 95% interval straddles its
limit; see ``slo``). An inconclusive probe is repeated once at twice the length; a repeat that is
still inconclusive is counted by its point estimate. Every other verdict stops the search and is
never counted as a pass or a fail of the target: ``harness-bound`` (the load generator's CPU,
schedule lag or lost records), ``mock-bound`` (the mock upstream missed its own schedule),
``all-failed`` (no request succeeded; above a load that passed, it is a plain fail: an overloaded
target may answer every request with an error), ``no-requests`` (the probe's schedule sent
nothing: a trace's quiet stretch), ``interrupted`` (Ctrl-C). ``max_probes`` counts
bracket, bisection and repeat probes; the confirmation comes on top.

The conclusion (``conclude``) is a function of the probe list alone, so a search folder rebuilt
from its probes' records reaches the same capacity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from relaybench.search.slo import FAIL, INCONCLUSIVE, PASS, Check

HARNESS_BOUND = "harness-bound"
MOCK_BOUND = "mock-bound"
ALL_FAILED = "all-failed"
INTERRUPTED = "interrupted"
NO_REQUESTS = "no-requests"  # the probe's schedule sent nothing (a trace's quiet stretch)
STOPPING = (HARNESS_BOUND, MOCK_BOUND, ALL_FAILED, INTERRUPTED, NO_REQUESTS)

# what a search ended as (``Outcome.status``)
FOUND = "found"
BELOW_START = "below-start"
NO_FAILURE = "no-failure"  # every probe met the SLOs: the capacity is only a lower bound

LIFT = {
    HARNESS_BOUND: "more load-generator capacity: --processes N (one Locust process per core), "
    "or load generators on more machines (--remote-workers N), or a lighter probe "
    "(fewer output tokens per request)",
    MOCK_BOUND: "a mock with cores of its own: run `relaybench mock` on another machine and "
    "point --target at it, or lower its chunk rate (a larger --itl-ms, smaller --max-tokens)",
    ALL_FAILED: "check the target by hand (URL, --api-key, that it is up): every request failed",
    NO_REQUESTS: "a probe that sends something: a longer --probe-s, or for a trace a busier part "
    "of it (--trace-start, --trace-window) or a larger --speedup",
}


@dataclass(frozen=True)
class ProbeRequest:
    load: float
    seconds: float
    role: str  # bracket, bisect, repeat, confirm
    index: int  # 0-based position in the search


@dataclass
class ProbeResult:
    """What one probe measured and how it was judged (``verdict``: see the module docstring)."""

    load: float
    seconds: float
    verdict: str
    checks: list[Check] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why it stopped the search
    achieved_rps: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    folder: str | None = None
    role: str = "bracket"
    counted: str | None = None  # pass/fail as the search counted it; None: not counted

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checks"] = [c.as_dict() for c in self.checks]
        return out


Probe = Callable[[ProbeRequest], ProbeResult]


@dataclass(frozen=True)
class SearchSettings:
    start: float
    precision: float = 0.1  # relative width of the final bracket
    max_probes: int = 8
    probe_s: float = 10.0
    integer: bool = False  # the load axis is whole users
    unit: str = "req/s"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    status: str  # found, below-start, no-failure, or the stopping verdict
    capacity: float | None
    bracket: tuple[float | None, float | None]  # (highest pass below hi, lowest fail)
    converged: bool
    confirmed: bool
    stopped: str  # converged, max-probes, resolution, or a stopping verdict
    message: str
    hint: str | None
    probes: list[ProbeResult]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bracket"] = {"low": self.bracket[0], "high": self.bracket[1]}
        out["probes"] = [p.as_dict() for p in self.probes]
        return out


class _Stop(Exception):
    def __init__(self, verdict: str) -> None:
        self.verdict = verdict


class _Search:
    def __init__(self, probe: Probe, settings: SearchSettings) -> None:
        self.probe = probe
        self.s = settings
        self.probes: list[ProbeResult] = []

    @property
    def budget_left(self) -> bool:
        return sum(p.role != "confirm" for p in self.probes) < self.s.max_probes

    def _run(self, load: float, seconds: float, role: str) -> ProbeResult:
        request = ProbeRequest(load, seconds, role, len(self.probes))
        result = replace(self.probe(request), role=role)
        self.probes.append(result)
        overload = result.verdict == ALL_FAILED and any(p.counted == PASS for p in self.probes)
        if result.verdict in STOPPING and not overload:  # all failed above a pass: a plain fail
            raise _Stop(result.verdict)
        return result

    def measure(self, load: float, role: str) -> bool:
        """Probe ``load``; True if it counts as meeting the SLOs."""
        result = self._run(load, self.s.probe_s, role)
        if result.verdict == INCONCLUSIVE and self.budget_left:
            result = self._run(load, 2 * self.s.probe_s, "repeat")
        return self._count(result)

    def _count(self, result: ProbeResult) -> bool:
        if result.verdict == INCONCLUSIVE:
            ok = all(c.decided for c in result.checks)
        else:
            ok = result.verdict == PASS
        result.counted = PASS if ok else FAIL
        return ok

    def run(self) -> str:
        s = self.s
        lo: float | None = None
        hi: float | None = None
        load = s.start
        while True:  # the doubling bracket
            if self.measure(load, "bracket"):
                lo = load
                if not self.budget_left:
                    return "max-probes"
                load = math.ceil(load * 2) if s.integer else load * 2
            else:
                hi = load
                break
        if lo is None:
            return "below-start"
        stopped = "converged"
        while (hi - lo) / lo > s.precision:  # bisection
            mid = round((lo + hi) / 2) if s.integer else _round((lo + hi) / 2)
            if mid in (lo, hi):
                stopped = "resolution"
                break
            if not self.budget_left:
                stopped = "max-probes"
                break
            if self.measure(mid, "bisect"):
                lo = mid
            else:
                hi = mid
        self._count(self._run(lo, 2 * s.probe_s, "confirm"))
        return stopped


def find_capacity(probe: Probe, settings: SearchSettings) -> Outcome:
    """Run the search; Ctrl-C (KeyboardInterrupt) ends it with the probes done so far."""
    search = _Search(probe, settings)
    try:
        stopped = search.run()
    except _Stop as stop:
        stopped = stop.verdict
    except KeyboardInterrupt:
        stopped = INTERRUPTED
    return conclude(search.probes, settings, stopped)


def conclude(probes: list[ProbeResult], settings: SearchSettings, stopped: str) -> Outcome:
    """The capacity, its bracket and a one-line message, from the probes alone."""
    fails = [p.load for p in probes if p.counted == FAIL]
    hi = min(fails) if fails else None
    passes = [p.load for p in probes if p.counted == PASS and (hi is None or p.load < hi)]
    lo = max(passes) if passes else None
    converged = lo is not None and hi is not None and (hi - lo) / lo <= settings.precision
    confirmed = any(p.role == "confirm" and p.load == lo and p.counted == PASS for p in probes)
    unit = settings.unit
    last = probes[-1] if probes else None
    hint = None
    if stopped in STOPPING:
        status, capacity = stopped, None
        at = f" at {_fmt(last.load)} {unit}" if last else ""
        why = "; ".join(r.rstrip(".") for r in last.reasons) if last and last.reasons else "–"
        known = _bounds(lo, hi, unit)
        if stopped == INTERRUPTED:
            message = f"interrupted after {len(probes)} probe(s){at}; {known}"
        else:
            message = f"{stopped}{at}: {why}. The target's capacity is not known; {known}"
            hint = LIFT.get(stopped)
    elif lo is None:
        status, capacity = BELOW_START, None
        at = _fmt(hi) if hi is not None else _fmt(settings.start)
        message = (
            f"below --start: even {at} {unit} misses the SLOs, so the capacity is below it; "
            "rerun with a lower --start"
        )
    elif hi is None:
        status, capacity = NO_FAILURE, None
        message = (
            f"every probe met the SLOs up to {_fmt(lo)} {unit} before --max-probes ran out: the "
            f"capacity is at least {_fmt(lo)} {unit}; raise --start or --max-probes"
        )
    else:
        status, capacity = FOUND, lo
        width = (hi - lo) / lo
        message = (
            f"capacity {_fmt(lo)} {unit} (meets the SLOs; {_fmt(hi)} {unit} does not: "
            f"a bracket {width:.0%} wide)"
            + ("" if confirmed else "; not confirmed by a longer probe")
            + ("" if converged else f"; wider than --precision {settings.precision:g}")
        )
    return Outcome(status, capacity, (lo, hi), converged, confirmed, stopped, message, hint, probes)


def _bounds(lo: float | None, hi: float | None, unit: str) -> str:
    if lo is not None and hi is not None:
        return f"it is at least {_fmt(lo)} and below {_fmt(hi)} {unit} (from the counted probes)"
    if lo is not None:
        return f"it is at least {_fmt(lo)} {unit} (the highest counted pass)"
    if hi is not None:
        return f"it is below {_fmt(hi)} {unit} (the lowest counted fail)"
    return "no probe was counted"


def _round(x: float) -> float:
    """Four significant digits: a bisection step needs no more, and the loads stay readable."""
    return float(f"{x:.4g}")


def _fmt(x: float) -> str:
    return f"{x:g}"
