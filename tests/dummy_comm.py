"""A recording dummy comm for widget tests: no kernel, and every message to the front end kept.

:func:`record_comms` (behind the ``comms`` fixture of conftest.py) replaces ipywidgets'
comm factory, so each widget opens a :class:`DummyComm`; tests then assert the exact ``update``
messages that went to the front end, and can play front-end messages back into a widget.
:class:`Chunks` makes the chunks such a test feeds a view.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import ipywidgets
import pytest
from ipywidgets.widgets import widget as widget_module


@dataclass
class Sent:
    """One message that went to the front end."""

    at: float
    data: dict[str, Any]
    buffers: list[Any] | None


@dataclass
class DummyComm:
    """Stands in for a kernel comm: keeps the open message and every ``send``."""

    target_name: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    comm_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False
    kernel: object = field(default_factory=object)  # ipywidgets sends only if not None

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.sent.append(Sent(time.monotonic(), data, buffers))

    def on_msg(self, callback: Any) -> None:
        self.on_msg_callback = callback

    def on_close(self, callback: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        self.closed = True


class CommRecorder:
    """Every comm the widgets opened during a test."""

    def __init__(self) -> None:
        self.comms: list[DummyComm] = []

    def create(self, **kwargs: Any) -> DummyComm:
        comm = DummyComm(target_name=kwargs.get("target_name", ""),
                         data=kwargs.get("data") or {},
                         comm_id=kwargs.get("comm_id") or uuid.uuid4().hex)
        self.comms.append(comm)
        return comm

    def updates(self, since: float = 0.0) -> list[Sent]:
        """State updates and custom messages (an anywidget's deltas) sent since ``since``."""
        return sorted((m for c in self.comms for m in c.sent
                       if m.data.get("method") in ("update", "custom") and m.at >= since),
                      key=lambda m: m.at)


def record_comms(monkeypatch: pytest.MonkeyPatch) -> CommRecorder:
    """Make every widget opened from now on (in this test) use a recording comm."""
    recorder = CommRecorder()
    monkeypatch.setattr(widget_module.comm, "create_comm", recorder.create)
    return recorder


def front_end_state(w: ipywidgets.Widget) -> dict[str, Any]:
    """The widget's state as the front end has it: the open message plus every update."""
    comm = w.comm
    assert isinstance(comm, DummyComm), "the widget did not open a recording comm"
    state = dict(comm.data["state"])
    for message in comm.sent:
        if message.data.get("method") == "update":
            state.update(message.data["state"])
    return state


def from_front_end(w: ipywidgets.Widget, data: dict[str, Any]) -> None:
    """Deliver a comm message to ``w`` as the front end would send it."""
    comm = w.comm
    assert isinstance(comm, DummyComm), "the widget did not open a recording comm"
    comm.on_msg_callback({"content": {"data": data}, "buffers": []})


def custom_messages(w: ipywidgets.Widget) -> list[dict[str, Any]]:
    """The custom messages (``widget.send``) that went to the front end, in order."""
    comm = w.comm
    assert isinstance(comm, DummyComm), "the widget did not open a recording comm"
    return [m.data["content"] for m in comm.sent if m.data.get("method") == "custom"]


def transcript_text(w: ipywidgets.Widget) -> str:
    """The text a ``Transcript`` front end shows, rebuilt from the operations it was sent."""
    from helix_lab.widgets.transcript import replay_text

    return "\n".join(replay_text(custom_messages(w)))


class Chunks:
    """Chunks in sequence, as a session would send them."""

    def __init__(self, start: int = 0, agent_type: str = "agent") -> None:
        self.sequence, self.agent_type = start, agent_type

    def __call__(self, kind: str, step: int = 1, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence": self.sequence, "agentId": "a",
                "agentType": self.agent_type, "step": step,
                "timestamp": 1_700_000_000_000 + self.sequence, **fields}
