"""Figure 9: the step inspector. Opening step 10,000 against opening step 10.

One session is built to 10,000 steps (a zero-latency model with tiny turns: one tool call
per step, as in figure 4). Then ``GET /steps/{step}`` is asked for, alternately, step 10
and step 10,000 of it, through ``AgentHandle.step`` on a LocalBackend (the real routes).
The answer carries what the model was sent, what it returned, the tool results, tokens,
cost and timing; it is rebuilt from the stored message log, so the figure says whether
opening a step deep in a long session reads only that step's rows. The ratio compares
equal answers (the newest 10 messages sent, which both steps have); the default answer
(up to 50 messages: 19 at step 10, 50 at step 10,000) is reported beside it.
"""

from __future__ import annotations

from typing import Any

from .common import Context, Figure, HelixRig, Ratio, median, on_long_session, stopwatch

GOAL = 1.5
""""~1": opening a step deep in the history may cost at most 1.5x one near its start."""
EQUAL = 10
"""Messages sent that both steps return for the ratio: the same answer, at any depth."""


def measure(ctx: Context) -> Figure:
    steps, early, repeats = ctx.n(10_000, 300), 10, ctx.n(51, 5)

    async def opens(rig: HelixRig, handle: Any) -> dict[str, Any]:
        times: dict[tuple[int, int | None], list[float]] = {
            (s, m): [] for s in (early, steps) for m in (EQUAL, None)}
        sizes: dict[int, int] = {}
        for step in (early, steps):  # one untimed open of each first
            sizes[step] = len((await handle.step(step))["request"]["messages"])
        ctx.log(f"{repeats} rounds of opening step {early} and step {steps:,}")
        for _ in range(repeats):
            for (step, messages), found in times.items():
                with stopwatch() as elapsed:
                    view = await handle.step(step, messages=messages)
                if view["step"] != step:
                    raise RuntimeError(f"asked for step {step}, got {view['step']}")
                found.append(elapsed())
        with stopwatch() as elapsed:
            full = await handle.step(steps, messages=2 * steps + 1)
        whole = elapsed()
        return {"times": {k: median(v) for k, v in times.items()}, "sizes": sizes,
                "whole": whole, "whole_messages": len(full["request"]["messages"])}

    out = on_long_session(ctx, "inspector", "long", steps, opens)
    times = out["times"]
    ratio = times[steps, EQUAL] / times[early, EQUAL]
    default = times[steps, None] / times[early, None]
    return Figure(
        number=9, title="Step inspector",
        measures=f"Latency of `GET /steps/{{step}}` for step {early} and step {steps:,} of the "
        f"same {steps:,}-step session (median of {repeats} each, alternating), returning the "
        f"newest {EQUAL} messages sent at that step (`?messages={EQUAL}`), and with the "
        "default of up to 50.",
        baseline=f"opening step {early}.",
        ratios=[
            Ratio.at_most(f"open step {steps:,} ÷ open step {early}, {EQUAL} messages each",
                          ratio, f"{ratio:.2f}", GOAL,
                          goal=f"≤ {GOAL} (~1: no step loads the others)"),
            Ratio(f"open step {steps:,} ÷ open step {early}, default answer "
                  f"({out['sizes'][steps]} / {out['sizes'][early]} messages)", default,
                  f"{default:.2f}"),
            Ratio(f"all {out['whole_messages']:,} messages of step {steps:,} ÷ open step "
                  f"{early}", out["whole"] / times[early, None],
                  f"{out['whole'] / times[early, None]:.0f}"),
        ],
        raw=[
            (f"open step {early} / step {steps:,}, {EQUAL} messages",
             f"{times[early, EQUAL] * 1000:.2f} ms / {times[steps, EQUAL] * 1000:.2f} ms"),
            (f"open step {early} / step {steps:,}, default answer",
             f"{times[early, None] * 1000:.2f} ms / {times[steps, None] * 1000:.2f} ms"),
            (f"messages returned for step {early} / step {steps:,}",
             f"{out['sizes'][early]} / {out['sizes'][steps]}"),
            (f"step {steps:,} with every message it was sent ({out['whole_messages']:,})",
             f"{out['whole'] * 1000:.1f} ms"),
            (f"building the {steps:,}-step session", f"{out['build']:.1f} s"),
        ],
        notes=[
            "The machine was shared with other work while this ran (load average above the "
            "core count), so single timings are noisy; the medians and their ratio are what "
            "to read.",
            "A step is found through a small per-step row (pointers into the message log, "
            "tokens, cost, timing) on its branch, then the messages it sent and produced are "
            "read back from its last message, newest first, as far as asked: nothing else "
            "of the session is read.",
            "Asking for every message sent at step 10,000 (`?messages=N`) reads the whole "
            "conversation up to it, which grows with the history by necessity.",
        ],
        plan=None if ratio <= GOAL else (
            "Profile GET /steps at the deep step: the branch lineage walk and the message "
            "tail query should each read a bounded number of rows."),
    )
