"""``relaybench run``'s exit code, from what the run measured (the README's table):

==== ======================================================================================
0    the run completed, every target answered, and every SLO verdict passed (a degraded
     measurement is printed in the health line and left to ``relaybench gate`` to judge)
1    the run completed, but an SLO verdict failed, every request of a target failed, or a
     target was stopped early because its first requests all failed the same way (the SLO
     verdict of a baseline target — the default run's relay-buffered — is reported, not gated)
2    bad usage, or a target that could not be connected to: refused before any load, or
     stopped early because its first requests all failed to connect
130  interrupted (Ctrl-C, SIGTERM, or STOP in Locust's web UI)
==== ======================================================================================
"""

from __future__ import annotations

from typing import Any

from relaybench import records

OK = 0
FAILED = 1
USAGE = 2
INTERRUPTED = 130


def run_exit_code(
    summary: dict[str, Any] | None, meta: dict[str, Any], *, interrupted: bool
) -> tuple[int, list[str]]:
    """The exit code and one line per reason for it (empty for 0)."""
    if interrupted:
        return INTERRUPTED, ["interrupted"]
    reasons: list[str] = []
    code = OK
    entries = meta.get("targets") or {}
    for name, entry in entries.items():
        early = entry.get("stopped_early")
        if early:
            unreachable = early.get("error") == records.CONNECT
            code = max(code, USAGE if unreachable else FAILED)
            reasons.append(
                f"{name}: stopped early, its first {early['requests']} requests all failed: "
                f"{early['cause']}"
            )
    targets = (summary or {}).get("targets") or {}
    for name in meta.get("planned_targets") or list(entries):
        t = targets.get(name)
        if t is None or not t.get("requests"):
            code = max(code, FAILED)
            reasons.append(f"{name}: no request was measured")
        elif not t.get("ok") and not (entries.get(name) or {}).get("stopped_early"):
            code = max(code, FAILED)
            reasons.append(f"{name}: every request failed ({_top_cause(t)})")
    if summary is not None and meta.get("slo"):
        from reports.tables import slo_verdict  # the report's own verdict

        for name, t in targets.items():
            verdict = slo_verdict(t, meta["slo"])
            if (entries.get(name) or {}).get("baseline"):
                continue  # shown for comparison (what a user waits without streaming)
            if verdict.startswith("FAIL") and t.get("ok"):
                code = max(code, FAILED)
                reasons.append(f"{name}: SLO verdict {verdict}")
    return code, reasons


def _top_cause(t: dict[str, Any]) -> str:
    causes = t.get("error_causes") or []
    if causes:
        return f"{causes[0]['count']}× {causes[0]['cause']}"
    errors = t.get("errors") or {}
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "no detail"
