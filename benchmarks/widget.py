"""Figure 5: the widget under a fast stream. Comm messages per second, and complete text.

An ``AgentView`` (ipywidgets 8, default ``min_interval``) receives text deltas at 10,000
chunks a second for a few seconds, on the running event loop, as its stream task would
deliver them. Every widget's comm is a recording dummy (``create_comm`` patched), so each
message the front end would get is counted. At the end the text the front end was last
sent must hold every delta, in order.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from .common import Context, Figure, Ratio, run

RATE = 10_000
GOAL_MESSAGES = 50.0
"""Messages per second to the front end at most (our bound; ``min_interval`` = 0.1 s allows
10 redraws a second, each a few widget updates)."""


class RecordingComm:
    """Stands in for a kernel comm: keeps what would have been sent."""

    sent: list[tuple[float, Any]] = []

    def __init__(self, *args: Any, comm_id: str | None = None, **kwargs: Any) -> None:
        self.comm_id = comm_id or f"comm-{id(self):x}"
        self.kernel = object()  # ipywidgets sends only when the comm has a kernel

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        RecordingComm.sent.append((time.perf_counter(), data))

    def on_msg(self, callback: Any) -> None:
        pass

    def on_close(self, callback: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


def _null_backend(storage: Path) -> Any:
    """A LocalBackend on an empty namespace: the view's checkpoint refreshes find no
    session and say so quietly, as they would for a session that is not started yet."""
    from helix_lab import AgentRegistry, LocalBackend, create_agent_server
    from helix_lab.llm import ScriptedLLM
    from helix_lab.runtime import LocalNamespace

    server_class = create_agent_server(llm_adapter=lambda env, ctx: ScriptedLLM([]),
                                       agents=AgentRegistry())
    return LocalBackend(LocalNamespace(server_class, storage=str(storage)))


def measure(ctx: Context) -> Figure:
    import ipywidgets.widgets.widget as widget_module

    from helix_lab.widgets import AgentView

    seconds = ctx.n(3.0, 0.5)
    total = int(RATE * seconds)
    storage = ctx.path("widget")
    original = widget_module.comm.create_comm
    widget_module.comm.create_comm = RecordingComm
    RecordingComm.sent = []
    try:
        async def go() -> dict[str, Any]:
            backend = _null_backend(storage)
            view = AgentView(backend.handle("widget", "talker"))
            opened = len(RecordingComm.sent)
            base = {"agentId": "widget", "agentType": "talker", "runId": "run_1"}
            sequence = 0

            def chunk(kind: str, step: int, **extra: Any) -> dict[str, Any]:
                nonlocal sequence
                sequence += 1
                return {"type": kind, "sequence": sequence, "step": step,
                        "timestamp": int(time.time() * 1000), **base, **extra}

            view.receive(chunk("run_started", 0))
            view.receive(chunk("step_started", 1))
            deltas: list[str] = []
            loop = asyncio.get_running_loop()
            start = loop.time()
            start_sent = len(RecordingComm.sent)
            t0 = time.perf_counter()
            while len(deltas) < total:
                due = min(total, int((loop.time() - start) * RATE) + 1)
                while len(deltas) < due:
                    delta = f"w{len(deltas)} "
                    deltas.append(delta)
                    view.receive(chunk("text_delta", 1, delta=delta))
                await asyncio.sleep(0.001)
            fed = time.perf_counter() - t0
            during = len(RecordingComm.sent) - start_sent
            view.receive(chunk("run_completed", 1, output="".join(deltas)))
            await asyncio.sleep(view.min_interval * 2)  # let the last redraw go out
            view.close()
            await backend.aclose()
            return {"fed": fed, "during": during, "flushes": view.flushes, "opened": opened,
                    "text": "".join(deltas), "view": view}

        out = run(go())
    finally:
        widget_module.comm.create_comm = original
    # The payload does not name its widget: the stream's updates are the ones with its div.
    from helix_lab.widgets.transcript import replay_text

    # The stream goes as custom messages of deltas; rebuild what the front end was sent.
    ops = [data["content"] for _, data in RecordingComm.sent
           if isinstance(data, dict) and data.get("method") == "custom"]
    complete = (out["text"] in "".join(replay_text(ops))
                and out["view"].state.items[0].text == out["text"])
    rate_in = total / out["fed"]
    rate_out = out["during"] / out["fed"]
    ratio = rate_out / rate_in
    return Figure(
        number=5, title="Widget under a fast stream",
        measures=f"Comm messages an AgentView sends to the front end while {total:,} text "
        f"deltas arrive at {RATE:,}/s (min_interval {out['view'].min_interval} s).",
        baseline="the chunks that arrived in the same time.",
        ratios=[
            Ratio("comm messages/s ÷ chunks/s", ratio,
                  f"{ratio:.4f} ({rate_out:.0f} messages/s)",
                  goal=f"≤ {GOAL_MESSAGES:.0f} messages/s (bounded), text complete",
                  met=rate_out <= GOAL_MESSAGES and complete),
        ],
        raw=[
            ("chunks delivered to the view", f"{total:,} in {out['fed']:.2f} s "
             f"({rate_in:,.0f}/s)"),
            ("comm messages sent meanwhile", f"{out['during']:,} ({rate_out:.1f}/s)"),
            ("redraws (coalesced flushes)", f"{out['flushes']:,}"),
            ("comm messages while the view was built (not counted)", f"{out['opened']:,}"),
            ("the text sent to the front end holds every delta, in order",
             "yes" if complete else "NO"),
        ],
        notes=[
            "Messages are counted at the comm: every `send` a real kernel comm would make "
            "(widget state updates), whatever widget they belong to.",
        ],
        plan=None if rate_out <= GOAL_MESSAGES and complete else (
            "Coalesce harder: one redraw per min_interval whatever changed, and send the "
            "header only when its text changes."),
    )
