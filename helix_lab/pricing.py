"""What a model call costs, in US dollars, from a dated price table shipped with helix_lab.

::

    from helix_lab.pricing import cost_usd, price_for

    price_for("claude-sonnet-5-5")           # Price(input=2.0, output=10.0, ...)
    cost_usd("claude-sonnet-5-5", input_tokens=1200, output_tokens=300)   # 0.0054
    cost_usd("llama3.2", input_tokens=1200, output_tokens=300)            # None: unpriced

Prices are per million tokens, for the Anthropic models the ``anthropic`` SDK bundled
with helix_lab knows (``anthropic.types.Model``), as listed on :data:`PRICES_SOURCE` on
:data:`PRICES_AS_OF`. ``LLMConfig(pricing=...)`` overrides the table for one agent; any
other model (OpenAI-compatible servers, Ollama, the offline stand-in) is priced only when
a price is given. An unpriced call costs ``None``, never ``0``: a price nobody knows is not
a free call.

Cache writes are priced at the 5-minute rate, the API's default cache lifetime. Claude
Haiku 5.5 has two bands: a call whose prompt (input plus cache reads and writes) is over
100,000 tokens pays the higher rates on every token of that call.

This module is plain data and arithmetic (no I/O), so the runtime uses it in a Worker too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ANTHROPIC_PRICES", "PRICES_AS_OF", "PRICES_SOURCE", "Price", "cost_usd",
           "parse_price", "price_for", "price_table"]

PRICES_AS_OF = "2026-12-02"
PRICES_SOURCE = "https://platform.claude.com/docs/en/about-claude/pricing"


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens of each kind."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0
    long_prompt_threshold: int | None = None
    """Prompts (input + cache reads + cache writes) above this many tokens pay ``long_prompt``."""
    long_prompt: Price | None = None

    def cost(self, input_tokens: int = 0, output_tokens: int = 0, cache_read_tokens: int = 0,
             cache_write_tokens: int = 0) -> float:
        """The price of one call with these token counts."""
        prompt = input_tokens + cache_read_tokens + cache_write_tokens
        if (self.long_prompt is not None and self.long_prompt_threshold is not None
                and prompt > self.long_prompt_threshold):
            return self.long_prompt.cost(input_tokens, output_tokens, cache_read_tokens,
                                         cache_write_tokens)
        total = (input_tokens * self.input + output_tokens * self.output
                 + cache_read_tokens * self.cache_read + cache_write_tokens * self.cache_write)
        return total / 1_000_000

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "cacheRead": self.cache_read,
                "cacheWrite": self.cache_write}


def _p(input: float, output: float, cache_read: float, cache_write: float) -> Price:
    return Price(input, output, cache_read, cache_write)


_OPUS_4_5 = _p(5.0, 25.0, 0.50, 6.25)
_FABLE_5_1 = _p(10.0, 50.0, 0.25, 12.50)
_FABLE_5 = _p(10.0, 50.0, 1.00, 12.50)

ANTHROPIC_PRICES: dict[str, Price] = {
    "claude-fable-5-2": _p(8.0, 40.0, 0.20, 10.0),
    "claude-fable-5-1": _FABLE_5_1,
    "claude-mythos-5-1": _FABLE_5_1,  # Mythos shares its Fable generation's prices
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    "claude-opus-5-5": _p(4.0, 20.0, 0.20, 5.0),
    "claude-opus-5": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-sonnet-5-5": _p(2.0, 10.0, 0.10, 2.50),  # cache reads cut to $0.10 on 2026-10-07
    "claude-sonnet-5": _p(2.0, 10.0, 0.20, 2.50),
    "claude-sonnet-4-6": _p(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4-5": _p(3.0, 15.0, 0.30, 3.75),  # retired 2026-11-30; old sessions used it
    "claude-haiku-5-5": Price(0.10, 0.50, 0.01, 0.125, long_prompt_threshold=100_000,
                              long_prompt=_p(0.50, 2.50, 0.05, 0.625)),
    "claude-haiku-4-5": _p(1.0, 5.0, 0.10, 1.25),
}
"""Per model id. ``claude-mythos-5-2`` and ``claude-mythos-preview`` are left out: no
published price was found for them, so they show as unpriced rather than as a guess."""

_DATED = re.compile(r"^(?P<base>.+)-\d{8}$")


def parse_price(value: Price | Mapping[str, Any]) -> Price:
    """A :class:`Price`, or a mapping of its rates (``input``, ``output``, ``cache_read``
    or ``cacheRead``, ``cache_write`` or ``cacheWrite``), in dollars per million tokens."""
    if isinstance(value, Price):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"A price is a Price or a dict of rates, got {type(value).__name__}.")
    names = {"input": "input", "output": "output", "cache_read": "cache_read",
             "cacheRead": "cache_read", "cache_write": "cache_write",
             "cacheWrite": "cache_write"}
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(f"Unknown price field(s) {', '.join(unknown)}; use input, output, "
                         "cache_read and cache_write (US dollars per million tokens).")
    rates: dict[str, float] = {}
    for key, rate in value.items():
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
            raise ValueError(f"Price field {key!r} must be a number of dollars per million "
                             f"tokens, 0 or more; got {rate!r}.")
        rates[names[key]] = float(rate)
    if "input" not in rates or "output" not in rates:
        raise ValueError("A price needs at least input and output (dollars per million tokens).")
    return Price(**rates)


def price_for(model: str | None, pricing: Price | Mapping[str, Any] | None = None
              ) -> Price | None:
    """The price of ``model``: ``pricing`` when given, else the table's; ``None`` if unknown.

    A dated id (``claude-haiku-4-5-20251001``) is priced as its undated alias.
    """
    if pricing is not None:
        return parse_price(pricing)
    if not model:
        return None
    found = ANTHROPIC_PRICES.get(model)
    if found is None:
        dated = _DATED.match(model)
        if dated:
            found = ANTHROPIC_PRICES.get(dated.group("base"))
    return found


def cost_usd(model: str | None, *, input_tokens: int = 0, output_tokens: int = 0,
             cache_read_tokens: int = 0, cache_write_tokens: int = 0,
             pricing: Price | Mapping[str, Any] | None = None) -> float | None:
    """Dollars for one call, or ``None`` when the model has no known price."""
    price = price_for(model, pricing)
    if price is None:
        return None
    return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)


def price_table() -> list[dict[str, Any]]:
    """The shipped table as rows (model, then rates per million tokens), for display."""
    return [{"model": model, **price.to_json()} for model, price in ANTHROPIC_PRICES.items()]
