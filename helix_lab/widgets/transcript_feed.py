"""``TranscriptFeed``: turns a :class:`ViewState`'s transcript into deltas for ``Transcript``.

At each redraw it sends only what changed since the last one: new items, text appended
to the item still streaming, and tools that finished. A redraw at sequence 100,000 costs
what one at sequence 100 costs. It remembers the last :data:`WINDOW` items it sent (what
the front end keeps), so its memory is bounded too; older chunks come back a page at a
time when the user asks for them (the "earlier" button).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from .render import render_item
from .transcript import WINDOW, Transcript
from .view_state import Item, ViewState

__all__ = ["EARLIER_PAGE", "TEXT_LIMIT", "TranscriptFeed"]

EARLIER_PAGE = 500
"""Chunks read per click on "earlier"."""
TEXT_LIMIT = 20_000
"""Characters of one item drawn when it is first sent (the newest ones)."""

History = Callable[[int, int], Awaitable[list[dict[str, Any]]]]


@dataclass
class _Sent:
    item: Item
    id: int
    text: int  # characters of item.text the front end has
    open: bool  # may still change (a streaming text, a running tool)
    floor: int  # the last sequence before the chunks that made the item


def _html(item: Item) -> str:
    if len(item.text) > TEXT_LIMIT:
        item = replace(item, text="…" + item.text[-TEXT_LIMIT:])
    return render_item(item)


def _finished(item: Item) -> bool:
    return item.kind != "tool" or "output" in item.data or "error" in item.data


class TranscriptFeed:
    """Feeds one :class:`Transcript` from one :class:`ViewState`."""

    def __init__(self, state: ViewState, widget: Transcript, *, history: History,
                 spawn: Callable[[Any], Any], handed_over: Callable[..., bool]) -> None:
        self.state = state
        self.widget = widget
        self._history = history
        self._spawn = spawn
        self._handed_over = handed_over
        self._window: deque[_Sent] = deque()
        self._next_id = 0
        self._floor = 0  # state.last_sequence at the previous flush
        self.first_sequence = 0
        """Chunks at or below this sequence are not in the front end (paged in on demand)."""
        self.messages = 0
        widget.on_request("sync", self._on_sync)
        widget.on_request("earlier", self._on_earlier)

    def start_at(self, sequence: int) -> None:
        """The view opens at ``sequence`` (its tail): older chunks are behind "earlier"."""
        self.first_sequence = self._floor = sequence
        self.widget.has_earlier = sequence > 0

    # -- live deltas -----------------------------------------------------------------------

    def _new_items(self) -> list[Item]:
        items = self.state.items
        last = self._window[-1].item if self._window else None
        i = len(items) - 1
        while i >= 0 and items[i] is not last:  # few steps: only the new items are passed
            i -= 1
        return items[max(i + 1, len(items) - WINDOW):]

    def ops(self) -> list[dict[str, Any]]:
        """The operations that bring the front end up to date (and note them as sent)."""
        ops: list[dict[str, Any]] = []
        for sent in self._window:
            if not sent.open:
                continue
            item = sent.item
            if item.kind == "tool":
                if _finished(item):
                    ops.append({"op": "set", "id": sent.id, "html": _html(item)})
                    sent.open = False
            elif len(item.text) > sent.text:
                ops.append({"op": "append", "id": sent.id, "text": item.text[sent.text:]})
                sent.text = len(item.text)
        for item in self._new_items():
            self._next_id += 1
            self._window.append(_Sent(item, self._next_id, len(item.text), not _finished(item)
                                      or item.kind in ("text", "thinking"), self._floor))
            ops.append({"op": "add", "id": self._next_id, "html": _html(item)})
        while len(self._window) > WINDOW:  # the front end trims the same ones
            gone = self._window.popleft()
            self.first_sequence = max(self.first_sequence, gone.floor)
            self.widget.has_earlier = True
        items = self.state.items
        for sent in self._window:  # only the last item can still take text
            if sent.item.kind != "tool" and (not items or sent.item is not items[-1]):
                sent.open = False
        self._floor = self.state.last_sequence
        return ops

    def flush(self) -> None:
        """Send what changed since the last flush (nothing if nothing did)."""
        ops = self.ops()
        if ops:
            self._send(ops)

    def _send(self, ops: list[dict[str, Any]]) -> None:
        self.messages += 1
        self.widget.send({"type": "ops", "ops": ops})

    # -- requests from the front end -------------------------------------------------------

    def _on_sync(self) -> None:
        """A view was just drawn: bring every view to the window as it stands."""
        if self._handed_over(self._on_sync):
            return
        self.ops()  # what was pending is part of the reset below
        self._send([{"op": "reset", "ids": [s.id for s in self._window],
                     "html": [_html(s.item) for s in self._window]}])
        for sent in self._window:
            sent.text = len(sent.item.text)

    def _on_earlier(self) -> None:
        if self._handed_over(self._on_earlier):
            return
        self._spawn(self.load_earlier())

    async def load_earlier(self) -> None:
        """Page in the chunks just before the oldest ones drawn."""
        end = self.first_sequence
        if end <= 0:
            return
        start = max(0, end - EARLIER_PAGE)
        chunks = await self._history(start, end - start)
        scratch = ViewState(self.state.agent_type, self.state.session_id)
        for chunk in chunks:
            scratch.apply(chunk)
        self.first_sequence = start
        self.widget.has_earlier = start > 0
        self._send([{"op": "prepend", "html": [_html(i) for i in scratch.items]}])
