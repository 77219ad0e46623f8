"""Cloudflare Workflows' documented numbers and the step configuration, in Python.

Facts (from Cloudflare's Workflows docs: "Limits", "Sleeping and retrying", "Events and
parameters", "Rules of Workflows"):

- a step's result, and an event's payload, are at most 1 MiB (2^20 bytes) once serialized;
- a step name is a string of at most 256 characters, and it is the step's cache key,
  so it must be deterministic (no clock, no randomness in it);
- ``WorkflowStepConfig``: ``{"retries": {"limit", "delay", "backoff"}, "timeout"}``;
  without one a step is retried 5 times, 10 seconds apart, with exponential backoff,
  and each attempt may last 10 minutes;
- ``step.wait_for_event`` waits 24 hours unless told otherwise;
- a duration is a number of milliseconds or a string such as ``"10 seconds"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from ..errors import UserError

__all__ = [
    "DEFAULT_EVENT_TIMEOUT",
    "DEFAULT_STEP_CONFIG",
    "MAX_PAYLOAD_BYTES",
    "MAX_STEP_NAME",
    "Backoff",
    "RetryPlan",
    "WorkflowDuration",
    "WorkflowRetryConfig",
    "WorkflowStepConfig",
    "parse_duration",
    "retry_plan",
]

MAX_PAYLOAD_BYTES = 2**20
"""Largest step result or event payload Cloudflare stores (1 MiB)."""
MAX_STEP_NAME = 256
DEFAULT_EVENT_TIMEOUT = "24 hours"

Backoff = Literal["constant", "linear", "exponential"]
WorkflowDuration = int | float | str
"""Milliseconds, or ``"<n> <unit>"`` with unit second/minute/hour/day/week/month/year."""


class WorkflowRetryConfig(TypedDict, total=False):
    limit: int
    delay: WorkflowDuration
    backoff: Backoff


class WorkflowStepConfig(TypedDict, total=False):
    retries: WorkflowRetryConfig
    timeout: WorkflowDuration


DEFAULT_STEP_CONFIG: WorkflowStepConfig = {
    "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
    "timeout": "10 minutes",
}

_UNIT_SECONDS = {
    "millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600, "day": 86400,
    "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$")


def parse_duration(value: Any, what: str = "duration") -> float:
    """A workflow duration in seconds."""
    if isinstance(value, bool):
        raise UserError(f"{what} must be milliseconds or a string like '10 seconds', got {value!r}.")
    if isinstance(value, int | float):
        if value < 0:
            raise UserError(f"{what} must not be negative, got {value!r}.")
        return value / 1000
    if isinstance(value, str):
        match = _DURATION.match(value.lower())
        if match and match.group(2) in _UNIT_SECONDS:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise UserError(f"{what} {value!r} is not a duration: use milliseconds (a number) or a "
                    "string like '10 seconds', '5 minutes' or '1 hour'.")


@dataclass(frozen=True)
class RetryPlan:
    """How one step is attempted: how often, how far apart, and for how long each time."""

    limit: int
    """Retries after the first attempt."""
    delay: float
    """Seconds before the first retry; ``backoff`` says how later ones grow."""
    backoff: Backoff
    timeout: float
    """Seconds one attempt may take."""

    @property
    def attempts(self) -> int:
        return self.limit + 1

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 is the first retry)."""
        n = attempt - 1
        if self.backoff == "constant":
            return self.delay
        if self.backoff == "linear":
            return self.delay * n
        return self.delay * 2 ** (n - 1)


def retry_plan(config: WorkflowStepConfig | dict[str, Any] | None) -> RetryPlan:
    """Merge ``config`` over Cloudflare's defaults and check it."""
    config = dict(config or {})
    unknown = set(config) - {"retries", "timeout"}
    if unknown:
        raise UserError(f"Unknown step config key(s) {sorted(unknown)}: use 'retries' and "
                        "'timeout'.")
    retries = {**DEFAULT_STEP_CONFIG["retries"], **(config.get("retries") or {})}
    bad = set(retries) - {"limit", "delay", "backoff"}
    if bad:
        raise UserError(f"Unknown retries key(s) {sorted(bad)}: use 'limit', 'delay', 'backoff'.")
    limit = retries["limit"]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise UserError(f"retries.limit must be a whole number >= 0, got {limit!r}.")
    backoff = retries["backoff"]
    if backoff not in ("constant", "linear", "exponential"):
        raise UserError(f"retries.backoff must be 'constant', 'linear' or 'exponential', "
                        f"got {backoff!r}.")
    return RetryPlan(limit, parse_duration(retries["delay"], "retries.delay"), backoff,
                     parse_duration(config.get("timeout", DEFAULT_STEP_CONFIG["timeout"]),
                                    "timeout"))
