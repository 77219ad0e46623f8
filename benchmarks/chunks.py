"""Figure 2: text-delta chunks per second, persisted and fanned out to one SSE client.

A zero-latency model streams M text deltas in one step. The rate is M divided by the
time from the start request until one SSE client (LocalBackend: the real SSE route and
framing, in process) has received the run's last chunk. The baseline is raw sqlite3:
the same rows (read back from the session's own table) inserted with ``executemany`` in
one transaction into an empty table of the same schema, same pragmas.

The run's session is kept in ``ctx.cache["text_session"]`` for the replay figure.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .common import TINY_USAGE, Context, Figure, Ratio, run, stopwatch, words

GOAL = 0.10
"""helix_lab may be at most 10x slower than bare inserts of the same rows (our target; the
issue sets none): it also numbers, stamps and JSON-encodes each chunk, wakes the client,
frames it as SSE and the client decodes it."""


class TextRig:
    """A one-step agent whose model streams ``deltas`` text deltas as fast as it can."""

    def __init__(self, storage: Path, deltas: int) -> None:
        from helix_lab import Agent, AgentRegistry, LocalBackend, create_agent_server
        from helix_lab.llm import ScriptedLLM, Turn
        from helix_lab.runtime import LocalNamespace

        text = words(deltas)
        registry = AgentRegistry()
        registry.register(Agent(name="talker", max_steps=2, register=False))
        server_class = create_agent_server(
            llm_adapter=lambda env, ctx: ScriptedLLM([Turn(text=text, usage=TINY_USAGE)]),
            agents=registry)
        self.namespace = LocalNamespace(server_class, storage=str(storage))
        self.backend = LocalBackend(self.namespace)
        self.transactions = 0

    def count_transactions(self, session_id: str) -> None:
        """Count the storage transactions of a session (observation only)."""
        server = self.namespace.instance(self.namespace.id_from_name("session:" + session_id))
        sql = server.sql
        inner = sql.transaction

        def counted(fn: Any) -> Any:
            if not sql._depth:
                self.transactions += 1
            return inner(fn)

        sql.transaction = counted

    def db_path(self, session_id: str) -> Path:
        return Path(self.namespace._path(self.namespace.id_from_name("session:" + session_id)))

    async def aclose(self) -> None:
        await self.backend.aclose()
        await self.namespace.aclose()


async def _stream_run(rig: TextRig, session_id: str, *, client: bool) -> tuple[float, int]:
    """Start the run; with ``client``, time until the SSE client has its last chunk."""
    rig.count_transactions(session_id)
    with stopwatch() as elapsed:
        handle = await rig.backend.start("talker", "talk", session_id=session_id)
        received = 0
        if client:
            async for chunk in handle.stream():
                received += chunk["type"] == "text_delta"
        else:
            server = rig.namespace.instance(rig.namespace.id_from_name("session:" + session_id))
            await server.execution.wait()
    return elapsed(), received


def raw_sqlite_insert(source: Path, target: Path) -> tuple[float, int]:
    """Seconds to insert the source's text-delta rows into a fresh table, one transaction."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    schema = src.execute("SELECT sql FROM sqlite_master WHERE name = 'helix_chunks'").fetchone()[0]
    rows = src.execute("SELECT * FROM helix_chunks WHERE type = 'text_delta' "
                       "ORDER BY sequence").fetchall()
    src.close()
    conn = sqlite3.connect(str(target), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(schema)
    with stopwatch() as elapsed:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO helix_chunks VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    conn.close()
    return elapsed(), len(rows)


def measure(ctx: Context) -> Figure:
    deltas = ctx.n(100_000, 5_000)
    rounds = ctx.n(3, 1)
    storage = ctx.path("chunks")
    raw_dir = ctx.path("chunks-raw")
    best: dict[str, float] = {"persist": float("inf"), "live": float("inf"),
                              "raw": float("inf")}
    tx: dict[str, int] = {}
    dbs: list[Path] = []
    rows = 0

    async def one_round(r: int) -> None:
        rig = TextRig(storage, deltas)
        try:
            persist, _ = await _stream_run(rig, f"persist-{r}", client=False)
            tx["persist"], rig.transactions = rig.transactions, 0
            live, received = await _stream_run(rig, f"text-{r}", client=True)
            tx["live"] = rig.transactions
            dbs.append(rig.db_path(f"text-{r}"))
            if received != deltas:
                raise RuntimeError(f"the SSE client received {received} of {deltas} deltas")
            best["persist"], best["live"] = min(best["persist"], persist), min(best["live"], live)
        finally:
            await rig.aclose()

    ctx.log(f"{rounds} rounds of: helix_lab with {deltas:,} text deltas stored only; stored "
            "and streamed to one SSE client; raw sqlite3 inserts of the same rows")
    for r in range(rounds):
        run(one_round(r))
        raw, rows = raw_sqlite_insert(dbs[r], raw_dir / f"raw-{r}.sqlite3")
        best["raw"] = min(best["raw"], raw)
    ctx.cache["text_session"] = {"storage": storage, "session": "text-0",
                                 "db": dbs[0], "deltas": deltas}
    out = {"persist": best["persist"], "live": best["live"], "persist_tx": tx["persist"],
           "live_tx": tx["live"]}
    raw = best["raw"]
    live_rate, persist_rate, raw_rate = deltas / out["live"], deltas / out["persist"], rows / raw
    ratio = live_rate / raw_rate
    return Figure(
        number=2, title="Chunk write throughput",
        measures=f"{deltas:,} text-delta chunks from a zero-latency model, each numbered, "
        "stored, and delivered to one SSE client (LocalBackend, real SSE route and framing); "
        f"best of {rounds} rounds. The client decodes every chunk on the same thread, so its "
        "cost is counted too.",
        baseline=f"raw sqlite3: the same {rows:,} rows, `executemany` in one transaction, "
        "same schema and pragmas (WAL, synchronous=NORMAL); best of one per round, each "
        "right after that round's helix_lab runs.",
        ratios=[
            Ratio("helix chunks/s (stored + one SSE client) ÷ raw sqlite3 inserts/s", ratio,
                  f"{ratio:.3f}", goal=f"≥ {GOAL:.2f} (our target)", met=ratio >= GOAL),
            Ratio("helix chunks/s (stored, no client) ÷ raw sqlite3 inserts/s",
                  persist_rate / raw_rate, f"{persist_rate / raw_rate:.3f}"),
        ],
        raw=[
            ("helix_lab, stored + streamed to one SSE client",
             f"{live_rate:,.0f} chunks/s ({out['live']:.3f} s for {deltas:,})"),
            ("helix_lab, stored only", f"{persist_rate:,.0f} chunks/s ({out['persist']:.3f} s)"),
            ("storage transactions for the run (stored only / with client)",
             f"{out['persist_tx']} / {out['live_tx']} "
             f"(≈ {deltas / max(out['persist_tx'], 1):,.0f} chunks per transaction)"),
            ("raw sqlite3 executemany, one transaction",
             f"{raw_rate:,.0f} rows/s ({raw:.3f} s for {rows:,})"),
        ],
        notes=[
            "A zero-latency model never yields to the event loop while it streams, so the "
            "client only runs once the step's chunks are all stored, and reads them back from "
            "storage (the path a client that fell behind takes): 'stored + client' is in effect "
            "'stored, then replayed'. With a real model, whose stream awaits the network, live "
            "chunks reach the client from memory.",
            "Chunks written in one event-loop turn are stored together, up to 1,024 per "
            "transaction; a chunk is sent to clients only after its transaction commits, and "
            "the step's last chunks commit in the same transaction as its checkpoint, so "
            "batching loses nothing at a step boundary.",
            "Fixed while measuring: the SSE decoder (helix_lab/runtime/sse.py) re-sliced its "
            "buffer after every line, so decoding one large read (a stored page of 2,000 "
            "chunks) was quadratic; before the fix this figure was ≈ 4,400 chunks/s at "
            "20,000 deltas, after it ≈ 70,000 chunks/s on the same machine.",
        ],
        plan=None if ratio >= GOAL else (
            "The cost is per-chunk Python work, spread thin (cProfile of a 50,000-delta "
            "run). Done so far: each chunk is JSON-encoded once, in `DOStreamManager.write`; "
            "the stored JSON is spliced behind its stamp for SSE and WebSocket frames "
            "(`Chunk.to_json`), so the server never re-encodes a chunk, live or replayed "
            "(this moved the ratio from about 0.075 to 0.08, and replay from about 13x to "
            "11x). What is left, by the profile: the client's SSE line parsing (`SSEDecoder."
            "feed`, ~17%) and `json.loads` (~14%), the executor's per-delta `_emit` and "
            "`write` (~35%). Next: a fast path in the decoder for the server's own framing "
            "(one `data:` line per event), stamping chunks of one model call with a shared "
            "header instead of per-chunk dicts, and letting the executor yield to the loop "
            "after each flushed batch so a client reads from memory behind a model that "
            "never awaits."),
    )
