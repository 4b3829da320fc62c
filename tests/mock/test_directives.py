"""Directives from the ``[[mock …]]`` tag of the last user message: parsed like the headers.

A relay that drops custom headers still forwards the messages, so each ``X-Mock-*`` header has a
tag key read by the same code, with the same checks and the same 400s (naming the tag key).
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_upstream.errors import BadRequest
from mock_upstream.validation import Overrides, parse_body, parse_overrides

from .conftest import ReadStream

CHAT_URL = "/v1/chat/completions"
KEYS = {  # tag key -> header
    "fault": "X-Mock-Fault",
    "ttft-ms": "X-Mock-TTFT-Ms",
    "itl-ms": "X-Mock-ITL-Ms",
    "output-tokens": "X-Mock-Output-Tokens",
    "seed": "X-Mock-Seed",
}


def _chat(text: str, **extra: object) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": text}], **extra}).encode()


def _from_tag(text: str, headers: list[tuple[bytes, bytes]] | None = None) -> Overrides:
    request = parse_body(_chat(text), chat=True)
    return parse_overrides(headers or [], request.tag)


def _from_header(header: str, value: str) -> Overrides:
    return parse_overrides([(header.lower().encode(), value.encode())])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fault", "status:429"),
        ("fault", "stall-after:3"),
        ("fault", "no-done"),
        ("fault", "hang"),
        ("ttft-ms", "12.5"),
        ("itl-ms", "0"),
        ("output-tokens", "7"),
        ("seed", "99"),
    ],
)
def test_each_tag_key_means_what_its_header_means(key: str, value: str) -> None:
    assert _from_tag(f"hello [[mock {key}={value}]] there") == _from_header(KEYS[key], value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ttft-ms", "soon"),
        ("ttft-ms", "-5"),
        ("ttft-ms", "nan"),
        ("itl-ms", "inf"),
        ("output-tokens", "0"),
        ("output-tokens", "2.5"),
        ("output-tokens", "1000000000"),
        ("seed", "abc"),
        ("seed", "-1"),
        ("fault", "boom"),
        ("fault", "status:200"),
        ("fault", "hang:3"),
    ],
)
def test_bad_tag_values_fail_like_the_header_and_name_the_key(key: str, value: str) -> None:
    with pytest.raises(BadRequest) as by_header:
        _from_header(KEYS[key], value)
    with pytest.raises(BadRequest) as by_tag:
        _from_tag(f"[[mock {key}={value}]]")
    header, tag = by_header.value, by_tag.value
    assert tag.status == header.status == 400
    assert tag.param == f"[[mock {key}]]" and tag.code == "invalid_tag"
    assert f"tag key {key}" in tag.message
    # the same check, word for word, after the name of where the value came from
    assert tag.message.split(key, 1)[1] == header.message.split(KEYS[key], 1)[1]


@pytest.mark.parametrize(
    ("tag", "param", "words"),
    [
        ("[[mock speed=3]]", "[[mock speed]]", "unknown key 'speed'"),
        ("[[mock ttft-ms]]", "[[mock]]", "is not KEY=VALUE"),
        ("[[mock =3]]", "[[mock]]", "is not KEY=VALUE"),
        ("[[mock seed=1 seed=2]]", "[[mock seed]]", "given twice"),
        ("[[mock seed=1]] and [[mock seed=2]]", "[[mock seed]]", "given twice"),
        ("[[mock id=has/slash]]", "[[mock id]]", "id must be"),
        ("[[mock id=" + "a" * 65 + "]]", "[[mock id]]", "id must be"),
    ],
)
def test_bad_tag_syntax_is_400(tag: str, param: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        _from_tag(tag)
    assert caught.value.param == param and words in caught.value.message
    assert caught.value.code == "invalid_tag"


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(BadRequest) as caught:
        _from_tag("[[mock fast=1]]")
    for key in [*KEYS, "id"]:
        assert key in caught.value.message


def test_a_header_wins_over_the_tag_for_the_same_directive() -> None:
    headers = [(b"x-mock-ttft-ms", b"5")]
    got = _from_tag("[[mock ttft-ms=500 itl-ms=3 id=x.1]]", headers)
    assert (got.ttft_ms, got.itl_ms, got.tag_id) == (5.0, 3.0, "x.1")
    # even a bad tag value is not judged when the header gives that directive
    assert _from_tag("[[mock seed=bad]]", [(b"x-mock-seed", b"4")]).seed == 4


def test_only_the_last_user_message_counts() -> None:
    messages = [
        {"role": "user", "content": "[[mock output-tokens=9]]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "x [[mock seed=3 id=a-b_c]]"}]},
        {"role": "assistant", "content": "[[mock output-tokens=1]]"},
    ]
    request = parse_body(json.dumps({"messages": messages}).encode(), chat=True)
    got = parse_overrides([], request.tag)
    assert (got.output_tokens, got.seed, got.tag_id) == (None, 3, "a-b_c")


@pytest.mark.parametrize(
    "text", ["plain", "[[mockery seed=1]]", "[mock seed=1]", "[[ mock seed=1]]"]
)
def test_text_without_a_tag_sets_nothing(text: str) -> None:
    assert _from_tag(text) == Overrides()


def test_an_empty_tag_and_any_spacing_are_fine() -> None:
    assert _from_tag("[[mock]]") == Overrides()
    assert _from_tag("[[mock\n  seed=5\t id=q  ]]") == Overrides(seed=5, tag_id="q")
    assert _from_tag("[[mock SEED=5]]").seed == 5  # keys are case-insensitive


def test_legacy_prompt_carries_the_tag_too() -> None:
    for prompt in ("[[mock output-tokens=2]]", ["first", "[[mock output-tokens=2]]"]):
        request = parse_body(json.dumps({"prompt": prompt}).encode(), chat=False)
        assert parse_overrides([], request.tag).output_tokens == 2


@settings(max_examples=200, deadline=None)
@given(inside=st.text(alphabet=st.sampled_from("fault=ttf-msiedo:0123456789 .x"), max_size=40))
def test_any_tag_text_only_ever_parses_or_raises_bad_request(inside: str) -> None:
    try:
        _from_tag(f"[[mock {inside}]]")
    except BadRequest as exc:
        assert exc.status == 400 and exc.param and exc.param.startswith("[[mock")


# -- over real sockets ---------------------------------------------------------------------------


def test_tag_directives_drive_a_real_stream(mock_url: str, read_stream: ReadStream) -> None:
    text = "Hi [[mock output-tokens=3 ttft-ms=0 itl-ms=0 seed=11]]"
    body = {"messages": [{"role": "user", "content": text}], "stream": True}
    result = read_stream(mock_url, body=body)
    assert result.status == 200
    assert len(result.content_events()) == 3
    assert result.headers["x-mock-seed"] == "11"


def test_tag_fault_reaches_the_mock_without_headers(mock_url: str) -> None:
    r = httpx.post(mock_url + CHAT_URL, content=_chat("[[mock fault=status:503]]"))
    assert r.status_code == 503 and r.json()["error"]["code"] == "mock_fault"


def test_bad_tag_over_http_is_a_400_naming_the_key(mock_url: str) -> None:
    r = httpx.post(mock_url + CHAT_URL, content=_chat("[[mock itl-ms=fast]]"))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "[[mock itl-ms]]" and "itl-ms" in error["message"]
