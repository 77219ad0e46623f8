"""Figure 6: storage growth. Bytes on disk per step with a growing state, against LangGraph.

The one-tool agent runs with a tool that also appends a 100-character note to the state on
every step, so the state grows by a note per step; LangGraph's graph appends the same
note to a ``notes`` channel. Bytes on disk are every file of the storage directory after
the database is closed (WAL checkpointed), at two lengths, to see how the size grows.
"""

from __future__ import annotations

from .common import (
    Context,
    Figure,
    HelixRig,
    LangGraphRig,
    Ratio,
    dir_bytes,
    kib,
    rows_per_run,
    run,
)

GOAL_PER_STEP = 5 * 1024
GOAL_LINEAR = 1.25
"""Bytes per step at the longer run ÷ at the shorter may be at most this (linear ≈ 1)."""
NOTE = "n" * 100


def _helix_bytes(ctx: Context, steps: int) -> int:
    storage = ctx.path(f"storage-helix-{steps}")

    async def go() -> None:
        rig = HelixRig(storage, steps=steps, note=NOTE)
        try:
            await rig.run("grow")
            state = rig.server("grow").store.state_at(rig.server("grow").execution.head.id)
            if len(state["notes"]) != steps:
                raise RuntimeError(f"the state holds {len(state['notes'])} notes, not {steps}")
        finally:
            await rig.aclose()

    run(go())
    return dir_bytes(storage)


def _langgraph_bytes(ctx: Context, steps: int) -> int:
    storage = ctx.path(f"storage-langgraph-{steps}")
    rig = LangGraphRig(storage / "lg.sqlite", steps=steps, note=NOTE)
    try:
        rig.run("grow")
    finally:
        rig.close()
    return dir_bytes(storage)


def measure(ctx: Context) -> Figure:
    short, long = ctx.n(250, 50), ctx.n(500, 100)
    ctx.log(f"helix_lab: {short} and {long} steps with a growing state")
    hx = {steps: _helix_bytes(ctx, steps) for steps in (short, long)}
    ctx.log(f"LangGraph + SqliteSaver: {short} and {long} steps with a growing state")
    lg = {steps: _langgraph_bytes(ctx, steps) for steps in (short, long)}
    per_step = hx[long] / long
    growth = per_step / (hx[short] / short)
    lg_growth = (lg[long] / long) / (lg[short] / short)
    ratio = hx[long] / lg[long]
    return Figure(
        number=6, title="Storage growth",
        measures=f"Bytes on disk after a {long}-step conversation whose state grows by a "
        f"{len(NOTE)}-character note per step (and after {short} steps, for the growth).",
        baseline=f"LangGraph + SqliteSaver on the same run ({long} steps, the same note per "
        "step in a `notes` channel with an `operator.add` reducer).",
        ratios=[
            Ratio(f"helix bytes ÷ LangGraph bytes at {long} steps", ratio,
                  f"{ratio:.4f} ({1 / ratio:.0f}x smaller)"),
            Ratio.at_most(f"helix bytes per step at {long} steps", per_step, kib(per_step),
                          GOAL_PER_STEP, goal=f"≤ {GOAL_PER_STEP / 1024:.0f} KiB"),
            Ratio.at_most(f"helix bytes per step, {long} ÷ {short} steps", growth,
                          f"{growth:.2f}", GOAL_LINEAR, goal=f"≤ {GOAL_LINEAR} (linear)"),
        ],
        raw=[
            *rows_per_run("helix_lab", {n: f"{kib(hx[n])} ({kib(hx[n] / n)} per step)"
                                        for n in (short, long)}),
            *rows_per_run("LangGraph + SqliteSaver", {
                short: f"{kib(lg[short])} ({kib(lg[short] / short)} per step)",
                long: f"{kib(lg[long])} ({kib(lg[long] / long)} per step; per-step growth "
                f"{long} ÷ {short}: {lg_growth:.2f})"}),
        ],
        notes=[
            "helix_lab stores each message once (append-only rows), each checkpoint's state "
            "as a JSON patch against its parent with a full snapshot every 32 checkpoints, "
            "and every chunk of the stream (which a client can replay). SqliteSaver stores "
            "each checkpoint's channel values, so every step rewrites the message list and "
            "the notes: its size grows with the square of the steps.",
            "With a state that grows without bound, the periodic full snapshots are the one "
            "part of helix_lab's storage that grows faster than linearly (each is as large "
            "as the state at that point); the growth ratio above shows how much that weighs.",
        ],
        plan=None if per_step <= GOAL_PER_STEP and growth <= GOAL_LINEAR else (
            "Make snapshots less frequent as the state grows (snapshot when the patches "
            "since the last one outweigh the state, not every 32 checkpoints): loading "
            "stays bounded by the same cost, and storage becomes linear in what changed."),
    )
