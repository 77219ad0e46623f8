"""Figure 2: text-delta chunks per second, persisted and fanned out to one client.

A zero-latency model streams M text deltas in one step. The rate is M divided by the
time from the start request until one client has received the run's last chunk: the
in-kernel client (``LocalBackend``, which reads the session's subscription directly), and
an SSE client (``RemoteBackend`` over the in-process transport: the real ``/sse`` route,
SSE framing and parsing, in the same process). The baseline is raw sqlite3: the same rows
(read back from the session's own table) inserted with ``executemany`` in one
transaction into an empty table of the same schema, same pragmas.

The run's session is kept in ``ctx.cache["text_session"]`` for the replay figure.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .common import TINY_USAGE, Context, Figure, Ratio, run, stopwatch, words

GOAL = 0.25
"""Issue 9: stored and delivered to one client, at least a quarter of bare inserts' rate
(it also numbers, stamps and JSON-encodes each chunk and hands it to the client)."""
GOAL_STORED = 0.35
"""Issue 9: stored only, at least 0.35 of bare inserts' rate."""


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


async def _stream_run(rig: TextRig, session_id: str, *, client: bool | str
                      ) -> tuple[float, int]:
    """Start the run; with ``client``, time until the client has its last chunk
    (``client="sse"``: an SSE client over the in-process transport)."""
    rig.count_transactions(session_id)
    reader = rig.backend
    if client == "sse":
        from helix_lab import RemoteBackend
        from helix_lab.client.transport import NamespaceTransport

        reader = RemoteBackend("http://helix.local", transport=NamespaceTransport(rig.namespace))
    with stopwatch() as elapsed:
        handle = await rig.backend.start("talker", "talk", session_id=session_id)
        received = 0
        if client:
            async for chunk in reader.stream(handle.session_id):
                received += chunk["type"] == "text_delta"
        else:
            server = rig.namespace.instance(rig.namespace.id_from_name("session:" + session_id))
            await server.execution.wait()
    if reader is not rig.backend:
        await reader.aclose()
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
    kinds = ("persist", "live", "sse")
    best = dict.fromkeys([*kinds, "raw"], float("inf"))
    tx: dict[str, int] = {}
    dbs: list[Path] = []
    rows = 0

    async def one_round(r: int) -> None:
        rig = TextRig(storage, deltas)
        try:
            for kind, client in (("persist", False), ("live", True), ("sse", "sse")):
                rig.transactions = 0
                took, received = await _stream_run(rig, f"{kind}-{r}", client=client)
                tx[kind] = rig.transactions
                if client and received != deltas:
                    raise RuntimeError(f"the {kind} client received {received} of {deltas}")
                best[kind] = min(best[kind], took)
            dbs.append(rig.db_path(f"live-{r}"))
        finally:
            await rig.aclose()

    ctx.log(f"{rounds} rounds of: helix_lab with {deltas:,} text deltas stored only; stored "
            "and streamed to the in-kernel client; to an SSE client; raw sqlite3 inserts")
    for r in range(rounds):
        run(one_round(r))
        raw, rows = raw_sqlite_insert(dbs[r], raw_dir / f"raw-{r}.sqlite3")
        best["raw"] = min(best["raw"], raw)
    ctx.cache["text_session"] = {"storage": storage, "session": "live-0",
                                 "db": dbs[0], "deltas": deltas}
    raw_rate = rows / best["raw"]
    rate = {kind: deltas / best[kind] for kind in kinds}
    ratio = {kind: rate[kind] / raw_rate for kind in kinds}
    return Figure(
        number=2, title="Chunk write throughput",
        measures=f"{deltas:,} text-delta chunks from a zero-latency model, each numbered, "
        "stored, and delivered to one client: the in-kernel one (LocalBackend, which reads "
        "the session's subscription directly), or an SSE client (RemoteBackend over the "
        "in-process transport: the real /sse route, SSE framing and parsing, no socket); "
        f"best of {rounds} rounds. The client runs on the same thread, so its cost is "
        "counted too.",
        baseline=f"raw sqlite3: the same {rows:,} rows, `executemany` in one transaction, "
        "same schema and pragmas (WAL, synchronous=NORMAL); best of one per round, each "
        "right after that round's helix_lab runs.",
        ratios=[
            Ratio.at_least("helix chunks/s (stored + one client, in kernel) ÷ raw sqlite3 "
                           "inserts/s", ratio["live"], f"{ratio['live']:.3f}", GOAL),
            Ratio.at_least("helix chunks/s (stored + one SSE client) ÷ raw sqlite3 inserts/s",
                           ratio["sse"], f"{ratio['sse']:.3f}", GOAL),
            Ratio.at_least("helix chunks/s (stored, no client) ÷ raw sqlite3 inserts/s",
                           ratio["persist"], f"{ratio['persist']:.3f}", GOAL_STORED),
        ],
        raw=[
            ("helix_lab, stored + streamed to the in-kernel client",
             f"{rate['live']:,.0f} chunks/s ({best['live']:.3f} s for {deltas:,})"),
            ("helix_lab, stored + streamed to one SSE client",
             f"{rate['sse']:,.0f} chunks/s ({best['sse']:.3f} s)"),
            ("helix_lab, stored only", f"{rate['persist']:,.0f} chunks/s "
             f"({best['persist']:.3f} s)"),
            ("storage transactions for the run (stored only / in kernel / SSE)",
             f"{tx['persist']} / {tx['live']} / {tx['sse']} "
             f"(≈ {deltas / max(tx['persist'], 1):,.0f} chunks per transaction)"),
            ("raw sqlite3 executemany, one transaction",
             f"{raw_rate:,.0f} rows/s ({best['raw']:.3f} s for {rows:,})"),
        ],
        notes=[
            "Chunks written in one event-loop turn are stored together, up to 1,024 per "
            "transaction; a chunk is sent to clients only after its transaction commits, and "
            "the step's last chunks commit in the same transaction as its checkpoint, so "
            "batching loses nothing at a step boundary. The executor yields to the loop after "
            "each full batch, so even a model that never awaits lets the client read live "
            "chunks from memory.",
            "Where the time goes (100,000 deltas, stored only, about 0.31 s of CPU on the "
            "shared machine, split by switching parts off and by cProfile): SQLite's "
            "inserts of the rows, about what the baseline takes (0.12 s); the full-text "
            "index of the run's text, written in the run's last transaction (0.07 s, "
            "nearly all of it FTS5 tokenizing the 690 KB of text: figure 10); the rest "
            "per-delta Python, about 1.1 µs each: the model's async generator, the turn "
            "loop, and the stream's delta writer (numbering, stamping, encoding, queueing "
            "the row, handing the text to the index). The in-kernel client adds about "
            "0.15 s: a chunk dict per delta, the subscription's buffer, a copy for the "
            "caller and one async-generator hop. The SSE client adds about 0.2 s on the "
            "shared machine: it costs the server no chunk objects (each commit hands the "
            "reader's tail the rows it stored, formatted as one text: about 1 µs a row, "
            "0.08-0.12 s), RemoteBackend asks for the batched framing (`batch=1`: one "
            "event and one JSON array per read) and decodes it with msgspec (about 0.8 µs "
            "a chunk, 0.07-0.12 s), and the client's stream loop and yield take about "
            "0.05 s.",
            "Changed for issue 9: the in-kernel client no longer goes through SSE at all; "
            "string and integer fields are encoded without `json.dumps` (byte for byte the "
            "same); the row is built as the chunk is queued; text and thinking deltas take "
            "a direct path, one closure per model call (`DOStreamManager.delta_writer`: no "
            "keyword arguments merged per delta); the in-kernel client's stream is the "
            "subscription's own generator (one hop less per chunk); the search index is "
            "fed the step's text joined in Python as the deltas are queued, instead of "
            "reading every stored delta back and decoding its JSON in SQL, which was most "
            "of the SQL time (0.19 s of 0.42 s). For SSE (0.129 before): an SSE reader is "
            "a tail that holds no chunk objects and builds no per-chunk frame; a page is "
            "one event of the batched framing; the client decodes it with msgspec instead "
            "of scanning each chunk's event and `json.loads`.",
        ],
        plan=None if (ratio["live"] >= GOAL and ratio["sse"] >= GOAL
                      and ratio["persist"] >= GOAL_STORED) else (
            "What is left is per-chunk Python: one `Chunk` dict and one row tuple per delta, "
            "the executor's async loop over the adapter's events, the search index's "
            "tokenizing of the run's text (about a fifth of the stored-only time), and, "
            "for SSE, formatting each committed row and the client's decode. Next: "
            "let an adapter hand over several deltas at once, and give the in-kernel "
            "client its chunk built from the row (no shared chunk to copy)."),
    )
