"""Figure 12: the viewer at scale. Opening a 100,000-chunk session, and its comm traffic.

Two sessions are built with the real runtime on file storage: 10,000 steps (each a few
text deltas, a tool call and its result, usage and a checkpoint: ~100,000 chunks and
10,000 checkpoints) and 10 steps (~100 chunks). Opening one is what a user does in a new
kernel: a fresh namespace on the storage, ``AgentView(handle)``, ``follow()``, until the
view has the session's last chunk, its checkpoint list and its branch tree. Then chunks
arrive at 10,000 a second (the same mix, numbered on from the session's end) for a few
seconds, and every byte the view sends over its comms is counted (a recording comm, as
figure 5). Ratios: the long session against the short one, same run.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from .common import TINY_USAGE, Context, Figure, HelixRig, Ratio, median, ms, run, stopwatch
from .widget import RecordingComm

OPEN_GOAL = 3.0
BYTES_GOAL = 1.5
RATE = 10_000


class ByteComm(RecordingComm):
    """A recording comm that keeps the size of each message the front end would get."""

    sent: list[tuple[float, int]] = []  # type: ignore[assignment]

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        ByteComm.sent.append((time.perf_counter(), len(json.dumps(data, default=str))))


def _llm(steps: int) -> Any:
    from helix_lab.llm import ScriptedLLM, Turn, call

    made = [0]

    def turn(_request: Any) -> Turn:
        if made[0] < steps:
            made[0] += 1
            return Turn(text=f"Step {made[0]} looks at otters. ",
                        tool_calls=[call("echo", i=made[0])], usage=TINY_USAGE)
        return Turn(text="done", usage=TINY_USAGE)

    return ScriptedLLM([turn], loop=True, keep_requests=0)


def _mix(start: int) -> Any:
    """Chunks as a run sends them, numbered on from ``start``: ten per step."""
    sequence, step = start, 100_000
    while True:
        step += 1
        kinds = [("step_started", {}), *[("text_delta", {"delta": f"w{i} "}) for i in range(5)],
                 ("tool_start", {"toolName": "echo", "toolCallId": f"t{step}",
                                 "input": {"i": step}}),
                 ("tool_end", {"toolCallId": f"t{step}", "output": step}),
                 ("usage", {"inputTokens": 1, "outputTokens": 1}),
                 ("checkpoint", {"checkpointId": f"live-{step}", "branch": 0})]
        for kind, fields in kinds:
            sequence += 1
            yield {"type": kind, "sequence": sequence, "step": step, "agentId": "x",
                   "agentType": "bench", "timestamp": int(time.time() * 1000), **fields}


async def _open(server_class: Any, storage: Path, session: str, last: int) -> tuple[float, Any]:
    from helix_lab import LocalBackend
    from helix_lab.runtime import LocalNamespace
    from helix_lab.widgets import AgentView

    namespace = LocalNamespace(server_class, storage=str(storage))
    backend = LocalBackend(namespace)
    with stopwatch() as elapsed:
        view = AgentView(backend.handle(session, "bench"))
        caught_up = asyncio.Event()
        receive = view.receive

        def watch(chunk: dict[str, Any]) -> None:  # observation only: note the last chunk
            receive(chunk)
            if chunk["sequence"] >= last:
                caught_up.set()

        view.receive = watch
        view.follow()
        await caught_up.wait()
        view.receive = receive
        await view.refresh_checkpoints()
        view.flush()
    return elapsed(), (view, backend, namespace)


async def _close(opened: Any) -> None:
    view, backend, namespace = opened
    view.close()
    await backend.aclose()
    await namespace.aclose()


async def _traffic(view: Any, seconds: float) -> tuple[float, int]:
    """Feed chunks at RATE/s for ``seconds``; bytes/s the view sent meanwhile."""
    loop = asyncio.get_running_loop()
    feed = _mix(view.state.last_sequence)
    start_at = len(ByteComm.sent)
    start, sent = loop.time(), 0
    total = int(RATE * seconds)
    while sent < total:
        due = min(total, int((loop.time() - start) * RATE) + 1)
        while sent < due:
            view.receive(next(feed))
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.sleep(view.min_interval * 2)
    elapsed = loop.time() - start
    return sum(size for _, size in ByteComm.sent[start_at:]) / elapsed, sent


def measure(ctx: Context) -> Figure:
    import ipywidgets.widgets.widget as widget_module

    long_steps, short_steps = ctx.n(10_000, 500), 10
    repeats = ctx.n(5, 2)
    seconds = ctx.n(3.0, 0.5)
    where = {name: ctx.path(f"viewer-{name}") for name in ("long", "short")}
    rigs = {name: HelixRig(where[name], steps=steps, llm_factory=lambda steps=steps: _llm(steps))
            for name, steps in (("long", long_steps), ("short", short_steps))}
    original = widget_module.comm.create_comm
    widget_module.comm.create_comm = ByteComm
    ByteComm.sent = []
    try:
        async def go() -> dict[str, Any]:
            out: dict[str, Any] = {"open": {}, "bytes": {}, "chunks": {}, "checkpoints": {}}
            for name, rig in rigs.items():
                ctx.log(f"building the {name} session")
                build = await rig.run(name)
                server = rig.server(name)
                out["chunks"][name] = server.storage.stream.sequence
                out["checkpoints"][name] = server.storage.state.checkpoint_count()
                out.setdefault("build", {})[name] = build
                await rig.aclose()
            times: dict[str, list[float]] = {"long": [], "short": []}
            for _ in range(repeats):
                for name, rig in rigs.items():
                    took, opened = await _open(rig.server_class, where[name], name,
                                               out["chunks"][name])
                    times[name].append(took)
                    await _close(opened)
            out["open"] = {name: median(t) for name, t in times.items()}
            for name, rig in rigs.items():  # traffic after the open, on a fresh view
                _, opened = await _open(rig.server_class, where[name], name,
                                        out["chunks"][name])
                view = opened[0]
                out["bytes"][name], _ = await _traffic(view, seconds)
                out.setdefault("window", {})[name] = len(view.feed._window)
                await _close(opened)
            return out

        out = run(go())
    finally:
        widget_module.comm.create_comm = original
    open_ratio = out["open"]["long"] / out["open"]["short"]
    bytes_ratio = out["bytes"]["long"] / out["bytes"]["short"]
    chunks, cps = out["chunks"], out["checkpoints"]
    return Figure(
        number=12, title="The viewer at scale: opening a long session, and comm traffic",
        measures=f"Opening a session of {chunks['long']:,} chunks and {cps['long']:,} "
        f"checkpoints in AgentView (fresh namespace, until the view has its last chunk, its "
        f"checkpoints and its tree; median of {repeats}); then the bytes per second the "
        f"view sends over its comms while {RATE:,} chunks/s arrive for {seconds:g} s.",
        baseline=f"The same for a session of {chunks['short']:,} chunks and "
        f"{cps['short']:,} checkpoints, same run.",
        ratios=[
            Ratio.at_most(f"open {chunks['long']:,} chunks ÷ open {chunks['short']:,}",
                          open_ratio, f"{open_ratio:.2f}", OPEN_GOAL),
            Ratio.at_most(f"comm bytes/s at sequence {chunks['long']:,} ÷ at {chunks['short']:,}",
                          bytes_ratio, f"{bytes_ratio:.2f}", BYTES_GOAL),
        ],
        raw=[
            ("open, long session", ms(out["open"]["long"])),
            ("open, short session", ms(out["open"]["short"])),
            ("comm bytes/s, long session", f"{out['bytes']['long'] / 1024:,.1f} KiB/s"),
            ("comm bytes/s, short session", f"{out['bytes']['short'] / 1024:,.1f} KiB/s"),
            ("transcript items the kernel keeps for the front end, after the traffic",
             f"{out['window']['long']} (long), {out['window']['short']} (short)"),
            ("building the sessions", f"{out['build']['long']:.1f} s (long), "
             f"{out['build']['short']:.2f} s (short)"),
        ],
        notes=["A view opens at the session's tail (the last 2,000 chunks) and pages older "
               "ones in on demand; the transcript goes to the front end as deltas, the tree "
               "as one row per branch and a page of 30 checkpoints, the list as the newest "
               "100 checkpoints."],
    )
