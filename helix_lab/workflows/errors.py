"""The Workflows approach's own exceptions, placed in helix_lab's error tree.

::

    UserError
    ├── StepResultTooLargeError   a step returned more than Cloudflare stores (1 MiB)
    └── StepResultNotJSONError    a step returned something that cannot be stored
    RunError
    ├── NonRetryableError         raise in a step to fail it at once, without retries
    └── WorkflowTimeoutError      a step attempt or a wait_for_event ran out of time
    UserWarning
    └── NonDeterministicStepNameWarning

Unknown instances raise :class:`~helix_lab.errors.NotFoundError` (404), and an event sent
to a finished instance :class:`~helix_lab.errors.ConflictError` (409).
"""

from __future__ import annotations

from ..errors import RunError, UserError

__all__ = [
    "NonDeterministicStepNameWarning",
    "NonRetryableError",
    "StepResultNotJSONError",
    "StepResultTooLargeError",
    "WorkflowTimeoutError",
]


class StepResultTooLargeError(UserError):
    """A step's result is over Cloudflare's 1 MiB limit; retrying would not help."""


class StepResultNotJSONError(UserError):
    """A step's result cannot be serialized, so it cannot be stored and replayed."""


class NonRetryableError(RunError):
    """Raised inside a step: the step fails now, whatever its retry limit (as Cloudflare's)."""


class WorkflowTimeoutError(RunError):
    """A step attempt outlived its timeout, or ``wait_for_event`` got no event in time."""


class NonDeterministicStepNameWarning(UserWarning):
    """A replay met a step name the first run did not use at that point.

    Step names are the cache key of their results: a name built from the clock or from
    randomness changes on every replay, so the step runs again instead of being replayed.
    """
