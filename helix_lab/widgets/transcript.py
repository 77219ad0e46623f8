"""``Transcript``: the live stream of an agent view, as an anywidget that takes deltas.

The class is only its synced traits; the drawing is ``transcript.js`` beside it. Content
travels as custom messages of operations (``TranscriptFeed`` makes them), so an update costs
what changed, not the transcript: ``add`` an item's HTML, ``append`` text to a growing
item, ``set`` an item again (a tool that finished), ``prepend`` a page of older items, or
``reset`` to a window of items (the reply to a view that has just been drawn, which asks
with ``{"type": "sync"}``). The front end keeps at most :attr:`Transcript.window` items and
trims the oldest; ``{"type": "earlier"}`` asks for the page before the first one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["WINDOW", "Transcript", "replay_text"]

WINDOW = 300
"""Items the front end keeps; older ones are trimmed, and paged back in on demand."""


class Transcript(anywidget.AnyWidget):
    """The transcript's front end; fed by :class:`~helix_lab.widgets.transcript_feed.TranscriptFeed`."""

    _esm = Path(__file__).with_name("transcript.js")
    _css = Path(__file__).with_name("view.css")

    window = traitlets.Int(WINDOW, help="items the front end keeps").tag(sync=True)
    has_earlier = traitlets.Bool(False, help="older chunks can be paged in").tag(sync=True)
    empty_text = traitlets.Unicode("waiting for chunks…").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handlers: dict[str, list[Callable[[], None]]] = {}
        self.on_msg(self._on_front_end_message)

    def __repr__(self) -> str:
        return f"Transcript(window={self.window}, has_earlier={self.has_earlier})"

    @traitlets.validate("window")
    def _check_window(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise traitlets.TraitError(f"window must be 1 or more, got {proposal['value']}")
        return proposal["value"]

    def on_request(self, kind: str, handler: Callable[[], None]) -> None:
        """Call ``handler()`` when the front end sends ``{"type": kind}`` (sync, earlier)."""
        self._handlers.setdefault(kind, []).append(handler)

    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict):
            for handler in self._handlers.get(str(content.get("type")), []):
                handler()


def replay_text(messages: Iterable[dict[str, Any]]) -> list[str]:
    """The items' plain text a front end holds after ``messages`` (the custom messages a
    :class:`Transcript` sent, in order), as ``transcript.js`` applies them, untrimmed.

    For checking what went over the comm without a browser (tests, benchmarks)."""
    items: dict[Any, str] = {}
    earlier: list[str] = []
    for message in messages:
        for op in message.get("ops", []):
            if op["op"] == "reset":
                items = dict(zip(op["ids"], map(_plain, op["html"]), strict=True))
            elif op["op"] in ("add", "set"):
                items[op["id"]] = _plain(op["html"])
            elif op["op"] == "append" and op["id"] in items:
                items[op["id"]] += op["text"]
            elif op["op"] == "prepend":
                earlier = [*map(_plain, op["html"]), *earlier]
    return [*earlier, *items.values()]


def _plain(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))
