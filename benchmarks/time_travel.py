"""Figure 4: time travel. Resuming from step 10 against resuming from step 10,000.

One session is built to 10,000 steps (a zero-latency model with tiny turns: one tool call
per step). Then ``POST /resume`` with mode ``branch`` and a ``checkpointId`` forks it,
alternately from the checkpoint at step 10 and the one at step 10,000, through
``AgentHandle.resume(mode="from_checkpoint")`` on a LocalBackend (the real routes). The
latency is the request's round trip: the fork is written and the run launched. Each fork
then runs to its end (one step) before the next, which is reported separately.
"""

from __future__ import annotations

from typing import Any

from .common import (
    Context,
    Figure,
    HelixRig,
    Ratio,
    median,
    on_long_session,
    stopwatch,
    window_per_step,
)

GOAL = 1.5
""""~1": resuming deep in the history may cost at most 1.5x resuming near its start."""


def measure(ctx: Context) -> Figure:
    steps, early, repeats = ctx.n(10_000, 300), 10, ctx.n(11, 2)

    async def forks(rig: HelixRig, handle: Any) -> dict[str, Any]:
        window = min(1000, steps // 10)
        first, last = window_per_step(rig.stamps, window)
        checkpoints = await handle.checkpoints()
        at = {c["step"]: c["checkpointId"] for c in checkpoints
              if c["branch"] == 0 and c["status"] == "running"}
        rig.steps = 0  # every fork answers at once
        # The run a fork launches loads the conversation (20,000 messages deep in the
        # session), and the request after it pays a little for the memory that run
        # used, whichever checkpoint it forks from. So every timed fork follows an
        # untimed one chosen alike for both: from the deep end (the figure: a user
        # going back after a long run), and from the early end (a warm start).
        conditions = {"deep": steps, "early": early}
        latency = {(c, s): [] for c in conditions for s in (early, steps)}
        finish: dict[int, list[float]] = {early: [], steps: []}

        async def fork(step: int) -> float:
            with stopwatch() as total:
                with stopwatch() as elapsed:
                    await handle.resume(mode="from_checkpoint", checkpoint_id=at[step])
                await rig.server("deep").execution.wait()
            if rig.server("deep").execution.status != "completed":
                raise RuntimeError("a forked run did not complete")
            finish[step].append(total())
            return elapsed()

        ctx.log(f"{repeats} rounds of forks from step {early} and step {steps:,}")
        for _ in range(repeats):
            for condition, before in conditions.items():
                for step in (early, steps):
                    await fork(before)
                    latency[condition, step].append(await fork(step))
        return {"first": first, "last": last, "window": window,
                "latency": {k: median(v) for k, v in latency.items()},
                "finish": finish,
                "checkpoints": len(checkpoints)}

    out = on_long_session(ctx, "time-travel", "deep", steps, forks)
    lat = out["latency"]
    fin = {step: median(times) for step, times in out["finish"].items()}
    ratio = lat["deep", steps] / lat["deep", early]
    warm = lat["early", steps] / lat["early", early]
    return Figure(
        number=4, title="Time travel",
        measures=f"Latency of `POST /resume` (mode branch, checkpointId) from the checkpoint "
        f"at step {early} and at step {steps:,} of the same {steps:,}-step session (median "
        f"of {repeats} each). Each timed fork follows an untimed one from the same place for "
        f"both: step {steps:,} (after a long run), or step {early} (warm).",
        baseline=f"the same fork from step {early}.",
        ratios=[
            Ratio.at_most(f"resume latency, step {steps:,} ÷ step {early} (after a long run)",
                          ratio, f"{ratio:.2f}", GOAL, goal=f"≤ {GOAL} (~1, O(1) in history)"),
            Ratio.at_most(f"resume latency, step {steps:,} ÷ step {early} (warm)", warm,
                          f"{warm:.2f}", GOAL),
            Ratio(f"fork to its run's end, step {steps:,} ÷ step {early}",
                  fin[steps] / fin[early], f"{fin[steps] / fin[early]:.1f}"),
        ],
        raw=[
            (f"resume from step {early} / {steps:,}, after a fork from step {steps:,}",
             f"{lat['deep', early] * 1000:.2f} ms / {lat['deep', steps] * 1000:.2f} ms"),
            (f"resume from step {early} / {steps:,}, after a fork from step {early}",
             f"{lat['early', early] * 1000:.2f} ms / {lat['early', steps] * 1000:.2f} ms"),
            (f"fork to the end of its one-step run, from step {early} / {steps:,}",
             f"{fin[early] * 1000:.1f} ms / {fin[steps] * 1000:.1f} ms"),
            (f"building the {steps:,}-step session",
             f"{out['build']:.1f} s ({out['build'] / steps * 1000:.3f} ms per step; first / "
             f"last {out['window']:,} steps {out['first'] * 1000:.3f} / "
             f"{out['last'] * 1000:.3f} ms per step)"),
            ("checkpoints in the session", f"{out['checkpoints']:,}"),
        ],
        notes=[
            "The request writes the fork's starting checkpoint (its state rebuilt from at "
            "most 32 stored patches) and launches the run; the message prefix is loaded by "
            "the run itself, not by the request.",
            "A request made right after a long run ends pays about half a millisecond for "
            "that run's memory, whatever it asks for; it was 10-20 ms after a 10,000-step "
            "fork until the executor let go of a run's conversation when the run ends "
            "(fixed while measuring).",
            "The session is built with a model that forgets the requests it was sent: "
            "ScriptedLLM keeps every request, each holding its step's own copy of the "
            "message list, which at 10,000 steps would pin about 10^8 list slots (~800 MB).",
            "The forked run's first model call needs the whole conversation up to the "
            f"checkpoint ({2 * steps:,} messages at step {steps:,}), so the time to the "
            "fork's end grows with the history by necessity: the model must be sent it.",
        ],
        plan=None if ratio <= GOAL and warm <= GOAL else (
            "Profile the resume handler at the deep checkpoint; anything in it that reads "
            "the history (messages or the checkpoint chain) should move into the run or be "
            "bounded by the snapshot interval."),
    )
