"""Chat sessions in flight follow the closed-loop shape the run asks for."""

from __future__ import annotations

import pytest

from loadtests.shapes import stage_at
from relaybench.run.config import ShapeParams


@pytest.mark.parametrize("shape", ["steady", "step", "peak", "spike", "soak"])
def test_chat_follows_its_shape(shape: str) -> None:
    chat = ShapeParams("chat", users=40, duration_s=100, chat_shape=shape)
    plain = ShapeParams(shape, users=40, duration_s=100)
    for t in range(0, 101, 5):
        assert stage_at(chat, t) == stage_at(plain, t)
    assert not chat.open_loop


def test_chat_peak_moves_the_sessions() -> None:
    p = ShapeParams("chat", users=40, duration_s=100, chat_shape="peak")
    assert stage_at(p, 5).users == 4 and stage_at(p, 50).users == 40
