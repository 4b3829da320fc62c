"""Pure tests of the latency, content, fault, load and stats modules (no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_upstream import content
from mock_upstream.errors import BadRequest
from mock_upstream.faults import (
    Fault,
    FaultRate,
    FaultSyntaxError,
    draw_fault,
    parse_fault,
    parse_rate,
)
from mock_upstream.latency import DISTRIBUTIONS, MAX_OUTPUT_TOKENS, Distribution, make_plan
from mock_upstream.load import Admission, QueueFull, slowdown_factor
from mock_upstream.stats import Lateness
from mock_upstream.validation import parse_body, parse_overrides


def _plan(seed: int, **kw):
    defaults = dict(
        ttft_ms=Distribution("lognormal", 300, 100),
        itl_ms=Distribution("normal", 20, 5),
        output_tokens=Distribution("uniform", 100, 50),
        vocab_size=len(content.VOCAB),
    )
    defaults.update(kw)
    return make_plan(random.Random(seed), seed=seed, **defaults)


@pytest.mark.parametrize("kind", DISTRIBUTIONS)
def test_distributions_are_seeded_non_negative_and_centred(kind: str) -> None:
    dist = Distribution(kind, 50.0, 10.0)
    a = [dist.sample(random.Random(3)) for _ in range(5)]
    rng1, rng2 = random.Random(42), random.Random(42)
    s1 = [dist.sample(rng1) for _ in range(4000)]
    s2 = [dist.sample(rng2) for _ in range(4000)]
    assert s1 == s2
    assert len(set(a)) == 1
    assert min(s1) >= 0
    assert statistics.fmean(s1) == pytest.approx(50.0, rel=0.08)
    if kind == "constant":
        assert set(s1) == {50.0}
    if kind == "uniform":
        assert min(s1) >= 40.0 and max(s1) <= 60.0
    if kind in ("normal", "lognormal"):
        assert statistics.stdev(s1) == pytest.approx(10.0, rel=0.15)


def test_normal_is_clipped_at_zero() -> None:
    rng = random.Random(1)
    samples = [Distribution("normal", 1.0, 10.0).sample(rng) for _ in range(1000)]
    assert min(samples) == 0.0 and max(samples) > 0


def test_unknown_distribution_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown distribution"):
        Distribution("gamma", 1.0)


def test_same_seed_same_plan_and_different_seed_differs() -> None:
    assert _plan(11) == _plan(11)
    assert _plan(11) != _plan(12)
    assert content.text_of(_plan(11).tokens) == content.text_of(_plan(11).tokens)


def test_plan_lengths_and_finish_reason() -> None:
    fixed = dict(output_tokens=Distribution("constant", 30))
    plan = _plan(1, **fixed)
    assert len(plan.tokens) == 30 and len(plan.gaps_s) == 29 and plan.finish_reason == "stop"
    cut = _plan(1, max_tokens=10, **fixed)
    assert len(cut.tokens) == 10 and cut.finish_reason == "length"
    roomy = _plan(1, max_tokens=100, **fixed)
    assert len(roomy.tokens) == 30 and roomy.finish_reason == "stop"
    exact = _plan(1, max_tokens=7, use_max_tokens=True, **fixed)
    assert len(exact.tokens) == 7 and exact.finish_reason == "length"
    header = _plan(1, fixed_output_tokens=5, **fixed)
    assert len(header.tokens) == 5
    huge = _plan(1, max_tokens=10**18, use_max_tokens=True, **fixed)
    assert len(huge.tokens) == MAX_OUTPUT_TOKENS and huge.finish_reason == "length"


def test_prefill_adds_per_prompt_token() -> None:
    base = _plan(5, ttft_ms=Distribution("constant", 100))
    more = _plan(5, ttft_ms=Distribution("constant", 100), prompt_tokens=50, prefill_ms_per_token=2)
    assert base.ttft_s == pytest.approx(0.1)
    assert more.ttft_s == pytest.approx(0.2)


def test_vocabulary_is_multibyte_and_json_safe() -> None:
    joined = "".join(content.VOCAB)
    widths = {len(ch.encode()) for ch in joined}
    assert widths >= {1, 2, 3, 4}
    templates = content.ChunkTemplates(chat=True, id_="x", created=1, model="m", crlf=False)
    import orjson

    for body in content.VOCAB_JSON:
        chunk = orjson.loads(templates.content(body, 123)[6:])
        assert chunk["x_mock_emitted_ns"] == 123


def test_chunk_bodies_batch_tokens() -> None:
    tokens = (0, 1, 2, 3, 4)
    bodies = content.chunk_bodies(tokens, 2)
    assert len(bodies) == 3
    assert b"".join(bodies) == b"".join(content.VOCAB_JSON[i] for i in tokens)


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("status:429", Fault("status", 429)),
        ("status:503", Fault("status", 503)),
        ("disconnect-after:3", Fault("disconnect", 3)),
        ("stall-after:0", Fault("stall", 0)),
        ("malformed-after:12", Fault("malformed", 12)),
        ("no-done", Fault("no-done", 0)),
        (" HANG ", Fault("hang", 0)),
    ],
)
def test_parse_fault_forms(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(fault.text) == fault  # the form /mock/requests shows parses back


@pytest.mark.parametrize(
    "text",
    ["", "boom", "status", "status:200", "status:abc", "disconnect-after:-1", "stall:3", "hang:1"],
)
def test_bad_fault_forms_list_valid_forms(text: str) -> None:
    with pytest.raises(FaultSyntaxError) as info:
        parse_fault(text)
    assert "status" in str(info.value)


def test_fault_rates_parse_and_draw_is_seeded() -> None:
    rates = (parse_rate("status:429=0.2"), parse_rate("disconnect=0.3"))
    assert rates[0] == FaultRate("status", 429, 0.2)
    draws = [draw_fault(random.Random(s), rates, 50) for s in range(2000)]
    again = [draw_fault(random.Random(s), rates, 50) for s in range(2000)]
    assert draws == again
    n429 = sum(1 for f in draws if f and f.kind == "status")
    ncut = sum(1 for f in draws if f and f.kind == "disconnect")
    assert 300 <= n429 <= 500  # ~0.2 of 2000
    assert 380 <= ncut <= 580  # ~0.8 * 0.3 of 2000
    assert all(0 <= f.value < 50 for f in draws if f and f.kind == "disconnect")
    for bad in ("boom=0.1", "disconnect=2", "disconnect", "status:99=0.1"):
        with pytest.raises(FaultSyntaxError):
            parse_rate(bad)


def test_no_done_and_hang_rates_draw_those_faults() -> None:
    rates = (parse_rate("no-done=0.5"), parse_rate("hang=1"))
    draws = {draw_fault(random.Random(s), rates, 50) for s in range(200)}
    assert draws == {Fault("no-done", 0), Fault("hang", 0)}


def test_admission_is_fifo_and_bounded() -> None:
    async def scenario() -> list[int]:
        adm = Admission(max_concurrency=1, max_queue=2)
        assert adm.admit() is None
        first, second = adm.admit(), adm.admit()
        assert first is not None and second is not None
        with pytest.raises(QueueFull):
            adm.admit()
        order: list[int] = []
        first.add_done_callback(lambda f: f.cancelled() or order.append(1))
        second.add_done_callback(lambda f: f.cancelled() or order.append(2))
        adm.release()
        await asyncio.sleep(0)
        adm.abandon(second)  # a waiter that left: removed, never admitted
        adm.release()
        await asyncio.sleep(0)
        assert second.cancelled()
        assert adm.active == 0 and adm.queued == 0
        return order

    assert asyncio.run(scenario()) == [1]


def test_slowdown_factor() -> None:
    assert slowdown_factor(10, 0.0, 0) == 1.0
    assert slowdown_factor(10, 0.1, 0) == pytest.approx(2.0)
    assert slowdown_factor(3, 0.1, 5) == 1.0


def test_lateness_quantiles() -> None:
    late = Lateness()
    for i in range(1000):
        late.add(i * 1e-6)  # 0 .. 999 µs
    summary = late.summary_ms()
    assert summary["count"] == 1000
    assert summary["p50"] == pytest.approx(0.5, abs=0.011)
    assert summary["p99"] == pytest.approx(0.99, abs=0.011)
    assert summary["max"] == pytest.approx(0.999)
    late.add(-0.002)
    late.add(50.0)  # overflow bin, exact max kept
    assert late.summary_ms()["max"] == pytest.approx(50_000.0)
    coarse = Lateness()
    for i in range(100):
        coarse.add(0.2 + i * 0.01)  # 200 .. 1190 ms, in the 1 ms bins
    assert coarse.summary_ms()["p50"] == pytest.approx(690.0, abs=1.01)
    assert coarse.summary_ms()["p99"] == pytest.approx(1180.0, abs=1.01)
    assert late.summary_ms()["min"] == pytest.approx(-2.0)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "messages": _json
        | st.lists(st.fixed_dictionaries({}, optional={"role": _json, "content": _json})),
        "prompt": _json,
        "model": _json,
        "stream": _json,
        "stream_options": _json | st.fixed_dictionaries({}, optional={"include_usage": _json}),
        "max_tokens": _json,
        "max_completion_tokens": _json,
        "temperature": _json,
        "n": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(body=_bodies, chat=st.booleans())
def test_parse_body_only_ever_accepts_or_raises_bad_request(body: dict, chat: bool) -> None:
    try:
        request = parse_body(json.dumps(body).encode(), chat=chat)
    except BadRequest as exc:
        assert exc.status == 400 and exc.message
    else:
        assert request.prompt_tokens >= 1
        assert request.max_tokens is None or request.max_tokens >= 1


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=64))
def test_parse_body_survives_arbitrary_bytes(raw: bytes) -> None:
    with contextlib.suppress(BadRequest):
        parse_body(raw, chat=True)


@settings(max_examples=200, deadline=None)
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    b"x-mock-ttft-ms",
                    b"x-mock-itl-ms",
                    b"x-mock-output-tokens",
                    b"x-mock-seed",
                    b"x-mock-fault",
                    b"x-other",
                ]
            ),
            st.binary(max_size=20),
        ),
        max_size=4,
    )
)
def test_parse_overrides_only_ever_accepts_or_raises_bad_request(headers) -> None:
    try:
        parse_overrides(headers)
    except BadRequest as exc:
        assert exc.param and exc.param.startswith("X-Mock-")
