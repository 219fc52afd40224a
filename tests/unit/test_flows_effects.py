"""Effects and results: frozen values, and :func:`expect`, the one typed yield."""

from __future__ import annotations

import pytest

from atrepo._flows.effects import DnsAnswer, DnsTxt, Effect, HttpGet, HttpResponse, expect


def test_effect_types_are_frozen_values():
    effect: Effect = HttpGet("https://x.test")
    assert effect == HttpGet("https://x.test") and hash(effect) == hash(HttpGet("https://x.test"))
    with pytest.raises(AttributeError):
        effect.url = "https://y.test"  # type: ignore[misc]
    assert not hasattr(effect, "__dict__")


def test_expect_returns_an_answer_of_the_type_asked():
    flow = expect(HttpGet("https://x.test"), HttpResponse)
    assert next(flow) == HttpGet("https://x.test")
    with pytest.raises(StopIteration) as done:
        flow.send(HttpResponse(204))
    assert done.value.value == HttpResponse(204)


@pytest.mark.parametrize("wrong", [None, HttpResponse(200)])
def test_expect_calls_any_other_answer_a_driver_bug(wrong):
    flow = expect(DnsTxt("x.test"), DnsAnswer)
    next(flow)
    with pytest.raises(TypeError, match="driver answered a DnsTxt with"):
        flow.send(wrong)
