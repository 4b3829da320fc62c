"""Are two runs comparable? Their scenario, load, duration, targets, SLOs and mock, side by side.

``compare`` prints every difference at the top of the comparison; ``gate`` refuses a baseline
whose scenario or load differs (``material``): latency under 60 users says nothing about a change
measured under 5. The load is the scenario's own parameters (``LOAD_KEYS``): users for a closed
loop, the rate (and the in-flight cap) for an open loop, the steps of a step run, the peak
multiple of a peak or spike. Everything comes from ``run.json``; a folder without one has no
known shape and is compared without a word.
"""

from __future__ import annotations

from dataclasses import dataclass

# which of ``scenario_params`` make the load of each scenario; others fall back to ``_ANY_LOAD``
LOAD_KEYS = {
    "steady": ("users",),
    "chat": ("users",),
    "soak": ("users",),
    "step": ("users", "steps", "rate"),
    "peak": ("users", "peak_multiple"),
    "retry-storm": ("users", "peak_multiple"),
    "spike": ("users", "peak_multiple"),
    "constant": ("rate", "users"),
    "poisson": ("rate", "users"),
    "trace": ("rate", "users"),
}
_ANY_LOAD = ("users", "rate", "steps", "peak_multiple")
# a trace run's load is also which trace, which part of it, and how fast and how dense
TRACE_KEYS = ("trace", "trace_start_s", "trace_window_s", "speedup", "rate_scale")
_MOCK_KEYS = ("ttft_ms", "itl_ms", "output_tokens", "max_concurrency", "slowdown_per_stream")


@dataclass(frozen=True)
class Difference:
    """One way two runs differ. ``material``: the load differs, so latencies do not compare."""

    what: str  # "scenario", "users", "duration_s", "targets", "slo", "mock.ttft_ms", ...
    a: object
    b: object
    material: bool

    def text(self) -> str:
        if self.what == "targets not compared":
            sides = [f"only in {side}: {', '.join(names)}"  # type: ignore[arg-type]
                     for side, names in (("A", self.a), ("B", self.b)) if names]  # fmt: skip
            return "targets " + "; ".join(sides)
        return f"{self.what} {_show(self.a)} vs {_show(self.b)}"


def load_of(meta: dict) -> dict[str, object]:
    """The scenario's load parameters from ``run.json`` (top-level ``users`` as a fallback)."""
    params = meta.get("scenario_params") or {}
    keys = LOAD_KEYS.get(str(meta.get("scenario")), _ANY_LOAD)
    load = {key: params.get(key) for key in keys}
    if load.get("users") is None and "users" in keys:
        load["users"] = meta.get("users")
    if "steps" in params and isinstance(params["steps"], list):  # synthetic: explicit steps
        load["steps"] = params["steps"]
    if meta.get("scenario") == "trace":
        traffic = meta.get("traffic") or {}
        load.update({key: traffic.get(key) for key in TRACE_KEYS})
    return load


def differences(
    meta_a: dict, meta_b: dict, pairs: list[tuple[str, str]] | None = None
) -> list[Difference]:
    """Every difference between two runs' ``run.json``, material (scenario, load) first.

    ``pairs`` are the (A name, B name) target pairs being compared; without them, targets pair
    by name. Two folders without ``run.json`` have no known shape: no difference.
    """
    if not meta_a or not meta_b:
        return []
    out: list[Difference] = []
    if meta_a.get("scenario") != meta_b.get("scenario"):
        out.append(Difference("scenario", meta_a.get("scenario"), meta_b.get("scenario"), True))
    load_a, load_b = load_of(meta_a), load_of(meta_b)
    for key in dict.fromkeys([*load_a, *load_b]):
        if load_a.get(key) != load_b.get(key):
            out.append(Difference(key, load_a.get(key), load_b.get(key), True))
    if meta_a.get("duration_s") != meta_b.get("duration_s"):
        out.append(Difference("duration_s", meta_a.get("duration_s"), meta_b.get("duration_s"),
                              False))  # fmt: skip
    out += _target_differences(meta_a, meta_b, pairs)
    if (meta_a.get("slo") or None) != (meta_b.get("slo") or None):
        out.append(Difference("slo", meta_a.get("slo"), meta_b.get("slo"), False))
    mock_a, mock_b = meta_a.get("mock") or {}, meta_b.get("mock") or {}
    for key in _MOCK_KEYS:
        if mock_a.get(key) != mock_b.get(key):
            out.append(Difference(f"mock.{key}", mock_a.get(key), mock_b.get(key), False))
    if meta_a.get("max_tokens") != meta_b.get("max_tokens"):
        out.append(Difference("max_tokens", meta_a.get("max_tokens"), meta_b.get("max_tokens"),
                              False))  # fmt: skip
    return out


def _target_differences(meta_a: dict, meta_b: dict, pairs) -> list[Difference]:
    targets_a, targets_b = meta_a.get("targets") or {}, meta_b.get("targets") or {}
    if pairs is None:
        pairs = [(n, n) for n in targets_a if n in targets_b]
    out = []
    only_a = [n for n in targets_a if n not in {a for a, _ in pairs}]
    only_b = [n for n in targets_b if n not in {b for _, b in pairs}]
    if only_a or only_b:
        out.append(Difference("targets not compared", only_a, only_b, False))
    for a, b in pairs:
        ta, tb = targets_a.get(a) or {}, targets_b.get(b) or {}
        label = a if a == b else f"{a}/{b}"
        for key in ("stream", "kind"):
            if key in ta and key in tb and ta[key] != tb[key]:
                out.append(Difference(f"target {label} {key}", ta[key], tb[key], False))
    return out


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return "[" + ", ".join(map(_show, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    return str(value)
