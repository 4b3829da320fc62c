"""The official openai SDK against the mock: streaming with usage, non-streaming, legacy."""

from __future__ import annotations

import asyncio

import openai

from .conftest import CHAT


def test_async_openai_streams_with_include_usage(mock_url: str, read_stream) -> None:
    expected = read_stream(mock_url, headers={"X-Mock-Seed": "31"}).text()

    async def run() -> tuple[str, object, list[str | None], set[str]]:
        client = openai.AsyncOpenAI(base_url=mock_url + "/v1", api_key="x", max_retries=0)
        stream = await client.chat.completions.create(
            model="mock-gpt",
            messages=CHAT,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Mock-Seed": "31"},
        )
        parts, finishes, roles, usage = [], [], set(), None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.role:
                    roles.add(choice.delta.role)
                if choice.delta.content:
                    parts.append(choice.delta.content)
                finishes.append(choice.finish_reason)
        await client.close()
        return "".join(parts), usage, finishes, roles

    text, usage, finishes, roles = asyncio.run(run())
    assert text == expected and len(text) > 0
    assert usage is not None and usage.completion_tokens == 12
    assert usage.total_tokens == usage.prompt_tokens + 12
    assert finishes[-1] == "stop" and roles == {"assistant"}


def test_sync_openai_non_streaming_and_max_tokens(mock_url: str) -> None:
    client = openai.OpenAI(base_url=mock_url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="m", messages=CHAT, max_tokens=3)
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    assert answer.model == "m"
    models = client.models.list()
    assert [m.id for m in models.data] == ["mock-gpt"]


def test_sync_openai_legacy_completions_stream(mock_url: str) -> None:
    client = openai.OpenAI(base_url=mock_url + "/v1", api_key="x", max_retries=0)
    text = "".join(
        choice.text
        for chunk in client.completions.create(model="m", prompt="Once", stream=True)
        for choice in chunk.choices
    )
    assert len(text) > 0


def test_openai_sees_injected_429_as_rate_limit_error(mock_url: str) -> None:
    client = openai.OpenAI(base_url=mock_url + "/v1", api_key="x", max_retries=0)
    try:
        client.chat.completions.create(
            model="m", messages=CHAT, extra_headers={"X-Mock-Fault": "status:429"}
        )
    except openai.RateLimitError as exc:
        assert exc.response.headers["retry-after"] == "1"
    else:
        raise AssertionError("expected RateLimitError")
