"""Figure 10: what the full-text index costs the chunk writes.

End to end (the ratio with the goal): figure 2's rig, a one-step run whose model streams
M text deltas, stored and streamed to one SSE client (the in-process transport); the rate
is M over the time until the client has the last chunk. Runs alternate with the index on
and off (its ``available`` switch, set on the session before the run); median ÷ median.

Storage alone (reported beside it): the stream (``DOStreamManager`` on a SQLite file, WAL) stores a model-like mix of chunks:
per step a ``step_started``, 40 one-word text deltas, 10 thinking deltas, a tool call
and its result, ``usage`` and a ``checkpoint``, written in batches of 32 chunks per
transaction (what a streaming model gets, one flush per event-loop turn). The same chunks
are written with the FTS5 index on and off (its ``available`` switch), alternately,
several times; the figure is the median rate with the index ÷ the median rate without.
A search then runs on the indexed copy, so the index is known to hold what was written.
"""

from __future__ import annotations

import time
from typing import Any

from .common import Context, Figure, Ratio, median, per_second, run

GOAL = 0.90
"""The issue: indexing may cost at most 10% of the chunk write throughput."""
BATCH = 32


def _chunks(steps: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        out.append({"type": "step_started", "step": step})
        out += [{"type": "thinking", "step": step, "delta": f"think{step} {i} "}
                for i in range(10)]
        out += [{"type": "text_delta", "step": step, "delta": f"otter{step}x{i} "}
                for i in range(40)]
        out.append({"type": "tool_start", "step": step, "toolName": "search",
                    "toolCallId": f"t{step}", "input": {"query": f"kelp {step}"}})
        out.append({"type": "tool_end", "step": step, "toolCallId": f"t{step}",
                    "output": f"found {step} urchins"})
        out.append({"type": "usage", "step": step, "inputTokens": 10, "outputTokens": 40})
        out.append({"type": "checkpoint", "step": step, "checkpointId": f"cp{step}"})
    return out


def _write(path: Any, chunks: list[dict[str, Any]], *, index: bool) -> tuple[float, Any]:
    from helix_lab.runtime.sql import SqliteStorage
    from helix_lab.runtime.stream import DOStreamManager

    sql = SqliteStorage(path)
    stream = DOStreamManager(sql)
    stream.search.available = index

    async def write() -> float:  # on a loop, as in a server: writes queue until a flush
        start = time.perf_counter()
        for i in range(0, len(chunks), BATCH):
            for chunk in chunks[i:i + BATCH]:
                stream.write(chunk, step=chunk["step"])
            stream.flush()
        return time.perf_counter() - start

    return run(write()), (stream, sql)


async def _end_to_end(storage: Any, deltas: int, rounds: int) -> dict[bool, list[float]]:
    from .chunks import TextRig, _stream_run

    rates: dict[bool, list[float]] = {True: [], False: []}
    rig = TextRig(storage, deltas)
    try:
        for r in range(rounds):
            for index in (False, True) if r % 2 == 0 else (True, False):
                session = f"e2e-{r}-{index}"
                server = rig.namespace.instance(rig.namespace.id_from_name("session:" + session))
                server.storage.stream.search.available = index
                took, received = await _stream_run(rig, session, client="sse")
                if received != deltas:
                    raise RuntimeError(f"the client received {received} of {deltas} deltas")
                rates[index].append(deltas / took)
    finally:
        await rig.aclose()
    return rates


def measure(ctx: Context) -> Figure:
    e2e = run(_end_to_end(ctx.path("search-e2e"), ctx.n(50_000, 2_000), ctx.n(5, 2)))
    e2e_with, e2e_without = median(e2e[True]), median(e2e[False])
    e2e_ratio = e2e_with / e2e_without
    steps = ctx.n(2_000, 100)
    rounds = ctx.n(7, 2)
    chunks = _chunks(steps)
    rates: dict[bool, list[float]] = {True: [], False: []}
    hits = 0
    for r in range(rounds):
        for index in (False, True) if r % 2 == 0 else (True, False):
            path = ctx.path(f"search-{r}-{index}") / "s.sqlite"
            seconds, (stream, sql) = _write(path, chunks, index=index)
            rates[index].append(len(chunks) / seconds)
            if index:
                hits = len(stream.search.search(f"otter{steps}x7", 10))
            sql.close()
    with_index, without = median(rates[True]), median(rates[False])
    ratio = with_index / without
    found = hits == 1
    return Figure(
        number=10, title="Full-text search: the index's cost to chunk writes",
        measures="A one-step run streaming text deltas to an SSE client, with the FTS5 index "
        f"on and off; and, storage alone, {len(chunks):,} chunks ({steps:,} steps of text, "
        f"thinking and a tool call) stored by the stream in transactions of {BATCH}. "
        "Medians of alternated runs.",
        baseline="The same runs and writes with the index off, same run.",
        ratios=[Ratio.at_least("chunk throughput (stored and streamed) with the index ÷ without",
                               e2e_ratio, f"{e2e_ratio:.2f}", GOAL,
                               goal=f"≥ {GOAL:.2f} (costs ≤ 10%)"),
                Ratio("storage alone: chunk writes with the index ÷ without", ratio,
                      f"{ratio:.2f}", goal=f"≥ {GOAL:.2f}, and found",
                      met=ratio >= GOAL and found)],
        raw=[("end to end: text deltas/s without the index", per_second(e2e_without, 1)),
             ("end to end: text deltas/s with the index", per_second(e2e_with, 1)),
             ("storage alone: chunks/s without the index", per_second(without, 1)),
             ("storage alone: chunks/s with the index", per_second(with_index, 1)),
             ("a word written in the last step is found", "yes" if found else "NO")],
        notes=["The index has a row per kind of text per step and per tool call, written "
               "at a step's end once 2,048 chunks wait and at a run's end (a search writes "
               "what waits first). The stream hands each chunk's text to the index as it "
               "queues it (a list append per delta), and the index inserts the step's text "
               "joined in Python; before, it was read back from the stored chunks and "
               "decoded by SQL (json_extract and group_concat over every delta), which cost "
               "about three times FTS5's own work. What the stream could not gather exactly "
               "(a rolled-back transaction, a stopped host's chunks) is still indexed by "
               "that SQL.",
               "Where the time goes, storage alone (switching the parts off in turn, on the "
               "shared machine): without the index about 4.5 µs per chunk; gathering the "
               "text adds about 10% and writing the index about 15%, nearly all of it FTS5 "
               "tokenizing and writing one-word deltas (about 0.5 µs a word, measured on a "
               "bare FTS5 table). End to end it is FTS5 writing the step's text, 50,000 "
               "distinct words, at the step's end: about 0.04 s of a run that takes about "
               "0.27 s without it, so a faster stream (the SSE path) makes its share larger."],
        plan=None if ratio >= GOAL and e2e_ratio >= GOAL else (
            "FTS5's own tokenizing and writing is more than 10% of a bare chunk write, and "
            "close to 10% of a fast one-step run, so writing the index where it is written "
            "now cannot meet the goal. "
            "Next: write it when the session goes idle (after a run's last chunk is sent), "
            "with a search catching it up first; that takes the cost off the chunk writes, "
            "it does not remove it, so the benchmark should then report it beside the "
            "ratio."),
    )
