"""Figure 1: per-step overhead against LangGraph, and whether it stays flat with history.

The same agent (one tool, a zero-latency scripted model) runs N steps on helix_lab's
in-kernel runtime and on LangGraph with SqliteSaver, both checkpointing every step to a
file. Time per step is the whole run (request to final answer) divided by N; the first
and last windows of tool-call timestamps show whether a step costs more as history grows.
"""

from __future__ import annotations

from .common import (
    Context,
    Figure,
    HelixRig,
    LangGraphRig,
    Ratio,
    median,
    rows_per_run,
    run,
    window_per_step,
)

GOAL_SPEEDUP = 20.0
GOAL_FLAT = 1.5
"""The last window of steps may cost at most this much more than the first."""
GOAL_DEFAULT_GROWTH = 1.3
"""With the default ScriptedLLM, a step at 1,000 steps may cost at most this much more
than a step at 100 steps."""
GOAL_DEFAULT_VS_LANGGRAPH = 0.05


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _median_run(runs: list[tuple[float, list[float]]]) -> tuple[float, list[float]]:
    """The run whose time per step is the median (with its stamps)."""
    middle = median([per_step for per_step, _ in runs])
    return min(runs, key=lambda run: abs(run[0] - middle))


def measure(ctx: Context) -> Figure:
    small, large = ctx.n(100, 20), ctx.n(1000, 100)
    window = large // 10
    helix_repeats = ctx.n(3, 1)

    async def helix(default: bool = False) -> dict[int, tuple[float, list[float]]]:
        out: dict[int, tuple[float, list[float]]] = {}
        label = "default" if default else "tiny"
        for steps in (small, large):
            runs = []
            for attempt in range(helix_repeats):
                rig = HelixRig(ctx.path(f"steps-helix-{label}-{steps}-{attempt}"), steps=steps,
                               default_llm=default)
                try:
                    runs.append((await rig.run("steps") / steps, rig.stamps))
                finally:
                    await rig.aclose()
            out[steps] = _median_run(runs)
        return out

    ctx.log(f"helix_lab: {small} and {large} steps, median of {helix_repeats}")
    hx = run(helix())
    ctx.log(f"helix_lab with the default ScriptedLLM: {small} and {large} steps, "
            f"median of {helix_repeats}")
    hx_default = run(helix(default=True))
    lg: dict[tuple[str, int], tuple[float, list[float]]] = {}
    for durability in ("async", "sync"):
        for steps in (small, large):
            repeats = helix_repeats if steps == small else 1  # a long run averages itself
            ctx.log(f"LangGraph + SqliteSaver, durability={durability!r}: {steps} steps"
                    + (f", median of {repeats}" if repeats > 1 else ""))
            runs = []
            for attempt in range(repeats):
                rig = LangGraphRig(ctx.path(f"steps-langgraph-{durability}-{steps}-{attempt}")
                                   / "lg.sqlite", steps=steps)
                try:
                    runs.append((rig.run("steps", durability=durability) / steps, rig.stamps))
                finally:
                    rig.close()
            lg[durability, steps] = _median_run(runs)

    hx_first, hx_last = window_per_step(hx[large][1], window)
    ratios = []
    for steps in (small, large):
        value = hx[steps][0] / lg["async", steps][0]
        goal_here = steps == large
        ratios.append(Ratio(
            f"helix ÷ LangGraph, time per step at {steps:,} steps", value,
            f"{value:.4f} ({1 / value:.1f}x faster)",
            goal=f"≤ {1 / GOAL_SPEEDUP:.2f} (≥ {GOAL_SPEEDUP:.0f}x faster)" if goal_here
            else "none set",
            met=(value <= 1 / GOAL_SPEEDUP) if goal_here else None))
    flat = hx_last / hx_first
    ratios.append(Ratio.at_most(f"helix, last {window} steps ÷ first {window} steps (per step)",
                                flat, f"{flat:.2f}", GOAL_FLAT, goal=f"≤ {GOAL_FLAT} (flat)"))
    growth = hx_default[large][0] / hx_default[small][0]
    ratios.append(Ratio.at_most(
        f"helix, default ScriptedLLM: per step at {large:,} steps ÷ at {small:,} steps",
        growth, f"{growth:.2f}", GOAL_DEFAULT_GROWTH))
    versus = hx_default[large][0] / lg["async", large][0]
    ratios.append(Ratio.at_most(
        f"helix with the default ScriptedLLM ÷ LangGraph, time per step at {large:,} steps",
        versus, f"{versus:.4f} ({1 / versus:.1f}x faster)", GOAL_DEFAULT_VS_LANGGRAPH))
    for steps in (small, large):
        value = hx[steps][0] / lg["sync", steps][0]
        ratios.append(Ratio(f"helix ÷ LangGraph with durability='sync', at {steps:,} steps",
                            value, f"{value:.4f} ({1 / value:.1f}x faster)"))

    def per_step(label: str, runs: dict[int, tuple[float, list[float]]]) -> list[tuple[str, str]]:
        return rows_per_run(label, {n: f"{_ms(runs[n][0])} per step" for n in (small, large)})

    raw = [
        *per_step("helix_lab", hx),
        (f"helix_lab, {large:,}-step run: first / last {window} steps",
         f"{_ms(hx_first)} / {_ms(hx_last)} per step"),
        *per_step("helix_lab with the default ScriptedLLM", hx_default),
    ]
    for durability in ("async", "sync"):
        label = "LangGraph + SqliteSaver" + (", durability='sync'" if durability == "sync"
                                             else " (default durability)")
        first, last = window_per_step(lg[durability, large][1], window)
        raw += [
            *per_step(label, {n: lg[durability, n] for n in (small, large)}),
            (f"{label}, {large:,}-step run: first / last {window} steps (tool-node stamps)",
             f"{_ms(first)} / {_ms(last)} per step"),
        ]
    notes = [
        "Time per step = wall time from the start request to the final answer ÷ steps "
        f"(median of {helix_repeats} fresh sessions, except LangGraph at {large:,} steps: one "
        "run each, long enough to average itself). A "
        "step is one model call plus one tool call; both commit a checkpoint per step to a "
        "sqlite file (helix_lab: WAL, synchronous=NORMAL; SqliteSaver: its defaults).",
        "The goal is taken against LangGraph's default durability ('async'), which the "
        "issue's reference figures (about 3 ms per step at 100 steps, 14 ms at 1,000) "
        "describe. It writes a step's checkpoint in the background while the next step "
        "runs, so its tool-node stamps run ahead of its writes and its window rows "
        "understate its cost; the whole-run figure includes the backlog it drains at the "
        "end. durability='sync' commits each step before the next, as helix_lab does: "
        "that comparison is the like-for-like one, and is reported too.",
        "The scripted model of the first rows reports fixed token usage and keeps no "
        "requests, so they time the runtime alone. The 'default ScriptedLLM' rows run "
        "ScriptedLLM as a user gets it: its own usage estimate (each message measured once, "
        "the first time it is sent) and its default bound of 100 kept requests.",
    ]
    met = all(r.met is not False for r in ratios)
    plan = None if met else (
        "Profile a 1,000-step run (`python -m cProfile -s tottime`). Known per-step work "
        "besides the checkpoint: the executor validates and deep-copies the state before and "
        "after each tool call, and a step commits three transactions (the model call's "
        "chunks, the tool's, the checkpoint's), which keep a live client up to date during "
        "slow steps but cost three WAL commits when steps are instant; coalescing the "
        "flushes of one step when it finishes within a few milliseconds would leave one.")
    return Figure(
        number=1, title="Per-step overhead vs LangGraph",
        measures=f"Time per step of the same one-tool agent, {small:,} and {large:,} steps, "
        "zero-latency scripted model, a checkpoint per step to a sqlite file.",
        baseline="LangGraph 1.2 StateGraph (llm + tool nodes, add_messages) with SqliteSaver "
        "on a file, same steps, default durability (and durability='sync').",
        ratios=ratios, raw=raw, notes=notes, plan=plan)
