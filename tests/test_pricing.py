"""The price table, LLMConfig's pricing and budget, and a tool's approval rule."""

from __future__ import annotations

import typing

import anthropic.types.model
import pytest

from helix_lab import Agent, LLMConfig, tool
from helix_lab.errors import UserError
from helix_lab.pricing import (
    ANTHROPIC_PRICES,
    PRICES_AS_OF,
    PRICES_SOURCE,
    Price,
    cost_usd,
    parse_price,
    price_for,
    price_table,
)
from helix_lab.tools import ToolInputError

# Models the SDK lists that have no published price: they must stay unpriced, not guessed.
UNPUBLISHED = {"claude-mythos-5-2", "claude-mythos-preview"}


def test_the_table_is_dated_and_names_its_source() -> None:
    assert PRICES_AS_OF.count("-") == 2 and PRICES_AS_OF.startswith("20")
    assert PRICES_SOURCE.startswith("https://") and "pricing" in PRICES_SOURCE


def test_every_model_the_sdk_knows_is_priced_or_deliberately_left_out() -> None:
    literal = typing.get_args(anthropic.types.model.Model)[0]
    known = set(typing.get_args(literal))
    assert known, "the SDK lists no models"
    unpriced = {m for m in known if price_for(m) is None}
    assert unpriced == UNPUBLISHED & known


def test_cost_of_a_call() -> None:
    # Sonnet 5.5: $2 in, $10 out, $0.10 cache read, $2.50 cache write per million.
    cost = cost_usd("claude-sonnet-5-5", input_tokens=1_000_000, output_tokens=100_000,
                    cache_read_tokens=2_000_000, cache_write_tokens=400_000)
    assert cost == pytest.approx(2.0 + 1.0 + 0.2 + 1.0)
    assert cost_usd("claude-opus-5-5", input_tokens=1000, output_tokens=1000) == pytest.approx(
        (4.0 * 1000 + 20.0 * 1000) / 1e6)


def test_dated_ids_are_priced_as_their_alias() -> None:
    assert price_for("claude-haiku-4-5-20251001") == ANTHROPIC_PRICES["claude-haiku-4-5"]
    assert price_for("claude-opus-4-5-20251101") == ANTHROPIC_PRICES["claude-opus-4-5"]


def test_haiku_5_5_long_prompts_pay_the_higher_band_on_every_token() -> None:
    short = cost_usd("claude-haiku-5-5", input_tokens=100_000, output_tokens=1000)
    assert short == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    # Cache reads count towards the prompt: 60k + 50k > 100k.
    long = cost_usd("claude-haiku-5-5", input_tokens=60_000, cache_read_tokens=50_000,
                    output_tokens=1000)
    assert long == pytest.approx((60_000 * 0.50 + 50_000 * 0.05 + 1000 * 2.50) / 1e6)


def test_unknown_models_are_unpriced_not_free() -> None:
    assert cost_usd("llama3.2", input_tokens=10, output_tokens=10) is None
    assert cost_usd(None, input_tokens=10) is None
    assert cost_usd("", input_tokens=10) is None


def test_a_given_price_overrides_the_table_and_prices_any_model() -> None:
    given = {"input": 1, "output": 2}
    assert cost_usd("llama3.2", input_tokens=1_000_000, output_tokens=1_000_000,
                    pricing=given) == pytest.approx(3.0)
    assert cost_usd("claude-sonnet-5-5", input_tokens=1_000_000,
                    pricing=Price(0.5, 1.0)) == pytest.approx(0.5)
    assert parse_price({"input": 1, "output": 2, "cacheRead": 0.1, "cache_write": 1.5}) == Price(
        1.0, 2.0, 0.1, 1.5)


@pytest.mark.parametrize("bad", [{"input": 1}, {"input": 1, "output": -2},
                                 {"input": 1, "output": "2"}, {"input": 1, "output": 2, "x": 3},
                                 {"input": True, "output": 2}])
def test_bad_prices_are_refused_with_the_reason(bad: dict) -> None:
    with pytest.raises(ValueError):
        parse_price(bad)
    with pytest.raises(UserError, match="pricing"):
        LLMConfig(model="m", pricing=bad)


def test_llm_config_normalises_pricing_and_checks_the_budget() -> None:
    config = LLMConfig(model="llama3.2", pricing={"input": 0.2, "output": 0.4},
                       max_cost_usd=0.5)
    assert config.pricing == Price(0.2, 0.4)
    assert LLMConfig().pricing is None and LLMConfig().max_cost_usd is None
    for budget in (0, -1, "1", True):
        with pytest.raises(UserError, match="max_cost_usd"):
            LLMConfig(max_cost_usd=budget)  # type: ignore[arg-type]


def test_price_table_rows() -> None:
    rows = price_table()
    assert len(rows) == len(ANTHROPIC_PRICES)
    sonnet = next(r for r in rows if r["model"] == "claude-sonnet-5-5")
    assert sonnet == {"model": "claude-sonnet-5-5", "input": 2.0, "output": 10.0,
                      "cacheRead": 0.1, "cacheWrite": 2.5}


# -- a tool's approval rule ---------------------------------------------------------------


def test_requires_approval_flag_and_predicate() -> None:
    @tool
    def plain(x: int) -> int:
        """Plain."""
        return x

    @tool(requires_approval=True)
    def risky(to: str) -> str:
        """Risky."""
        return to

    @tool(requires_approval=lambda args, state: args["amount"] > state["limit"])
    def pay(amount: int) -> str:
        """Pay."""
        return "paid"

    assert not plain.needs_approval({"x": 1}, {})
    assert risky.needs_approval({"to": "a"}, {})
    assert pay.needs_approval({"amount": 11}, {"limit": 10})
    assert not pay.needs_approval({"amount": 9}, {"limit": 10})
    Agent(name="approver", tools=[plain, risky, pay], register=False)


def test_requires_approval_must_be_a_bool_or_a_function() -> None:
    with pytest.raises(UserError, match="requires_approval"):
        @tool(requires_approval="yes")  # type: ignore[arg-type]
        def odd() -> None:
            """Odd."""


def test_validate_input_names_the_field() -> None:
    @tool
    def send_email(to: str, subject: str, urgent: bool = False) -> str:
        """Send."""
        return to

    assert send_email.validate_input({"to": "a@b.c", "subject": "hi"}) == {
        "to": "a@b.c", "subject": "hi", "urgent": False}
    with pytest.raises(ToolInputError) as missing:
        send_email.validate_input({"to": "a@b.c"})
    assert missing.value.field == "subject"
    with pytest.raises(ToolInputError) as wrong:
        send_email.validate_input({"to": "a@b.c", "subject": "x", "urgent": "very"})
    assert wrong.value.field == "urgent"
    with pytest.raises(ToolInputError) as extra:
        send_email.validate_input({"to": "a@b.c", "subject": "x", "bcc": "z"})
    assert extra.value.field == "bcc" and "bcc" in str(extra.value)
    with pytest.raises(ToolInputError):
        send_email.validate_input(["a"])
