"""Cassettes: record a real model run once, then replay it offline, event for event.

::

    llm = RecordingLLM(AnthropicAdapter("claude-sonnet-5-5"), "cassettes/tides.jsonl")
    ...                                     # run the agent once, online
    llm = ReplayLLM("cassettes/tides.jsonl")   # then offline, as often as you like

A cassette is JSON Lines, one line per model call, in call order::

    {"request": {...LLMRequest.to_json()...}, "events": [...], "error": null}

A call that failed keeps the events it streamed before failing, and its error::

    "error": {"message": "...", "retryable": true, "status": 529, "retry_after": null}

so retried failures replay exactly as they happened. Requests carry no credentials and
adapters keep keys out of error messages, so a cassette holds no secrets.

A replay checks each request against the recorded one. When they differ (the prompt, a
tool result or the model changed since the recording) it raises :class:`CassetteMismatch`
naming the first differing field, rather than answering a question nobody asked.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from ..difference import Difference, first_difference
from .base import LLMAdapter, LLMError, LLMEvent, LLMRequest

__all__ = ["CassetteMismatch", "RecordingLLM", "ReplayLLM"]


class CassetteMismatch(LLMError):
    """A replay was asked something its recording never saw.

    ``field`` is the first differing field of the request (``messages[3].content[0].text``,
    ``model``, ...), or ``"calls"`` when the recording has no more calls.
    """

    def __init__(self, source: str, call: int, field: str, recorded: Any, got: Any,
                 hint: str = "re-record it with RecordingLLM", detail: str | None = None) -> None:
        self.source, self.call, self.field = source, call, field
        self.recorded, self.got = recorded, got
        if detail is not None:
            message = f"{source} call {call}: {detail} ({field}) — {hint}."
        elif field == "calls":
            message = (f"{source} has {recorded} recorded calls; call {got} was requested — "
                       f"{hint}.")
        else:
            message = (f"{source} call {call}: the request differs from the recording at "
                       f"{Difference(field, recorded, got).describe()} — {hint}.")
        super().__init__(message, retryable=False)


def request_json(request: LLMRequest) -> dict[str, Any]:
    """A request as a cassette stores it, after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(request.to_json()))


def check_request(source: str, call: int, recorded: dict[str, Any], request: LLMRequest,
                  ignore: frozenset[str] = frozenset()) -> None:
    """Raise :class:`CassetteMismatch` unless ``request`` is the recorded one."""
    got = {k: v for k, v in request_json(request).items() if k not in ignore}
    want = {k: v for k, v in recorded.items() if k not in ignore}
    difference = first_difference(want, got)
    if difference is not None:
        raise CassetteMismatch(source, call, difference.path, difference.left,
                               difference.right)


class RecordingLLM:
    """Passes ``inner``'s events through and appends each finished call to ``path``.

    The first call starts a fresh cassette (an older file at ``path`` is replaced); later
    calls append. Calls should run one at a time: lines are written as calls end.
    """

    def __init__(self, inner: LLMAdapter, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.path = Path(path)
        self.calls = 0
        """Calls recorded so far."""

    def __repr__(self) -> str:
        return f"RecordingLLM({self.inner!r}, {str(self.path)!r})"

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        events: list[Any] = []
        error: dict[str, Any] | None = None
        stream = self.inner.stream(request)
        try:
            async for event in stream:
                # A JSON round trip copies the event (the caller may mutate it) and proves
                # it can be written before the call ends.
                events.append(json.loads(json.dumps(event)))
                yield event
        except LLMError as exc:
            error = {
                "message": exc.message,
                "retryable": exc.retryable,
                "status": exc.status,
                "retry_after": exc.retry_after,
            }
            raise
        except BaseException as exc:
            # The caller stopped reading (or was cancelled): what came next is unknown.
            error = {
                "message": f"The call was cut short while recording ({type(exc).__name__}).",
                "retryable": False,
                "status": None,
                "retry_after": None,
                "cut_short": True,
            }
            raise
        finally:
            self._write({"request": request.to_json(), "events": events, "error": error})
            # Leaving ``async for`` early does not close the inner generator: do it now.
            if (aclose := getattr(stream, "aclose", None)) is not None:
                await aclose()

    def _write(self, line: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a" if self.calls else "w", encoding="utf-8") as file:
            file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.calls += 1


class ReplayLLM:
    """Replays the calls of a cassette in order, each one only for the request it recorded.

    A request that differs from the recorded one raises :class:`CassetteMismatch`; list
    top-level request fields in ``ignore`` (e.g. ``{"model"}``) to replay across them.
    ``delay`` seconds pass between events, so notebooks can show a replay streaming live.
    Each request is kept in :attr:`requests` for tests to inspect.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        delay: float = 0.0,
        match: Literal["sequential"] = "sequential",
        ignore: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        if match != "sequential":
            raise ValueError(f"ReplayLLM supports match='sequential' only, not {match!r}.")
        self.path = Path(path)
        self.delay = delay
        self.ignore = frozenset(ignore)
        self.calls = _load(self.path)
        self.requests: list[LLMRequest] = []

    @classmethod
    def from_session(cls, path: str | os.PathLike[str], *, delay: float = 0.0,
                     ignore: frozenset[str] | set[str] = frozenset()) -> LLMAdapter:
        """Replay the model turns of an exported session (a ``.helix`` file), offline.

        Unlike a cassette, it answers by conversation rather than in order: any request
        whose messages the session recorded, on any branch, gets the turn that followed
        them, so a fork from any checkpoint runs offline. Returns a
        :class:`~helix_lab.llm.session_replay.SessionReplay`.
        """
        from .session_replay import SessionReplay

        return SessionReplay(path, delay=delay, ignore=ignore)

    def __repr__(self) -> str:
        return (
            f"ReplayLLM({str(self.path)!r}, calls={len(self.calls)}, replayed={len(self.requests)})"
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        number = len(self.requests) + 1
        source = f"cassette {self.path}"
        if number > len(self.calls):
            raise CassetteMismatch(source, number, "calls", len(self.calls), number)
        call = self.calls[number - 1]
        check_request(source, number, call["request"], request, self.ignore)
        self.requests.append(request)
        for index, event in enumerate(call["events"]):
            if self.delay and index:
                await asyncio.sleep(self.delay)
            yield copy.deepcopy(event)
        error = call["error"]
        if error is not None:
            message = error["message"]
            if error.get("cut_short"):
                message = (
                    f"cassette {self.path} call {number} was cut short when it was recorded, "
                    "so it ends here — re-record it with RecordingLLM."
                )
            raise LLMError(
                message,
                retryable=error.get("retryable", False),
                status=error.get("status"),
                retry_after=error.get("retry_after"),
            )


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No cassette at {path}: record one first with RecordingLLM(adapter, {str(path)!r})."
        ) from None
    calls = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            call = json.loads(line)
            if not isinstance(call["events"], list) or "error" not in call:
                raise ValueError("'events' must be a list and 'error' must be present")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number} is not a cassette line ({exc}).") from None
        calls.append(call)
    return calls
