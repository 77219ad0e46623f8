"""Figure 3: replaying a long stream from sequence 0, against one SQL query.

Over HTTP: ``helix serve`` (the Worker bundle under uvicorn, in a child process) serves a
session whose model streamed N text deltas; ``RemoteBackend(url, token).stream(id, 0)``
reads all of them back. In process: ``LocalBackend`` replays the session figure 2 built.
The baseline is ``SELECT * FROM helix_chunks ORDER BY sequence`` on the same file.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common import REPO, Context, Figure, Ratio, run, sqlite_read_all, stopwatch

GOAL = 4.0
"""Issue 9: a replay over HTTP may cost at most 4x the bare query, which only copies rows
out of sqlite, while a replay also frames each stored chunk as SSE, sends it, and the
client parses it back into a dict."""
GROWTH = 1.5
"""A replay's time per chunk may grow at most this much from a short session to a long one:
each page is found by sequence, so no page costs more for the pages before it."""
REPEAT = 3


def serve_available() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("helix_lab.cli", "helix_lab.serve", "helix_lab.worker_bundle.entry"))


@contextmanager
def helix_serve(storage: Path, deltas: int, token: str) -> Iterator[str]:
    """``helix serve`` in a child process with the benchmark agents; yields its URL."""
    log_path = storage.parent / "serve.log"
    env = {**os.environ, "HELIX_TOKEN": token, "HELIX_BENCH_DELTAS": str(deltas),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "helix_lab.cli", "serve", "--port", "0", "--storage",
             str(storage), "--agents", "benchmarks.serve_agents"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while True:
            text = log_path.read_text(errors="replace")
            marker = "listening on "
            if marker in text:
                yield text.split(marker, 1)[1].split()[0]
                return
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"helix serve did not start:\n{text[-2000:]}")
            time.sleep(0.05)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _replay(backend: Any, session_id: str, expected: int, db: Path
                  ) -> tuple[float, float]:
    """Best times to stream every chunk from sequence 0, and to read them with one query.

    The two are interleaved, so that load from elsewhere on the machine weighs on both."""
    best, best_sql = float("inf"), float("inf")
    for _ in range(REPEAT):
        count = 0
        with stopwatch() as elapsed:
            async for _chunk in backend.stream(session_id, 0):
                count += 1
        if count != expected:
            raise RuntimeError(f"replay yielded {count} chunks, {expected} are stored")
        best = min(best, elapsed())
        sql, rows = sqlite_read_all(db, repeat=1)
        if rows != expected:
            raise RuntimeError(f"{rows} rows in {db}, {expected} chunks streamed")
        best_sql = min(best_sql, sql)
    return best, best_sql


def _stored_db(storage: Path) -> Path:
    """The sqlite file (of those under ``storage``) holding the most chunks."""
    def count(path: Path) -> int:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM helix_chunks").fetchone()[0]
        except sqlite3.Error:
            return -1
        finally:
            conn.close()

    files = [p for p in storage.iterdir() if p.suffix in (".sqlite", ".sqlite3")]
    return max(files, key=count)


def _over_http(ctx: Context, deltas: int, name: str) -> dict[str, Any]:
    from helix_lab import RemoteBackend

    storage = ctx.path(name) / "objects"
    token = secrets.token_urlsafe(24)
    with helix_serve(storage, deltas, token) as url:
        async def go() -> dict[str, Any]:
            backend = RemoteBackend(url, token=token, timeout=120)
            try:
                with stopwatch() as build:
                    handle = await backend.start("talker", "talk", session_id="replay")
                    async for _chunk in handle.stream():
                        pass
                stored = (await handle.status())["lastSequence"]
                ctx.log(f"helix serve: built {stored:,} chunks in {build():.2f} s; replaying")
                replay, sql = await _replay(backend, "replay", stored, _stored_db(storage))
                return {"replay": replay, "sql": sql, "stored": stored, "build": build()}
            finally:
                await backend.aclose()

        return run(go())


def _in_process(ctx: Context, deltas: int) -> dict[str, Any]:
    from helix_lab import LocalBackend

    from .chunks import TextRig

    built = ctx.cache.get("text_session")
    if built is None:  # run on its own: build the session figure 2 would have built
        from .chunks import _stream_run

        storage = ctx.path("replay-local")
        rig = TextRig(storage, deltas)
        run(_stream_run(rig, "text", client=False))
        built = {"storage": storage, "session": "text", "db": rig.db_path("text")}
        run(rig.aclose())
    _, rows = sqlite_read_all(built["db"], repeat=1)
    rig = TextRig(built["storage"], 0)  # a fresh namespace over the stored session

    async def go() -> tuple[float, float]:
        backend = LocalBackend(rig.namespace)
        try:
            return await _replay(backend, built["session"], rows, built["db"])
        finally:
            await backend.aclose()
            await rig.aclose()

    replay, sql = run(go())
    return {"replay": replay, "sql": sql, "stored": rows}


def measure(ctx: Context) -> Figure:
    deltas = ctx.n(100_000, 5_000)
    ctx.log(f"in process: LocalBackend replay of {deltas:,}+ stored chunks")
    local = _in_process(ctx, deltas)
    local_ratio = local["replay"] / local["sql"]
    raw = [
        ("LocalBackend (in-process transport), stream from 0",
         f"{local['replay']:.3f} s for {local['stored']:,} chunks "
         f"({local['stored'] / local['replay']:,.0f}/s)"),
        ("one SQL query on the same file", f"{local['sql'] * 1000:.1f} ms"),
    ]
    ratios = []
    todo = None
    if serve_available():
        ctx.log(f"over HTTP: helix serve with {deltas:,} deltas")
        http = _over_http(ctx, deltas, "replay-serve")
        http_ratio = http["replay"] / http["sql"]
        ratios.append(Ratio.at_most("replay over HTTP (helix serve) ÷ one SQL query",
                                    http_ratio, f"{http_ratio:.1f}x", GOAL,
                                    goal=f"≤ {GOAL:.0f}x"))
        small = ctx.n(1_000, 500)
        ctx.log(f"over HTTP: helix serve with {small:,} deltas, for the growth")
        http_small = _over_http(ctx, small, "replay-serve-small")
        growth = ((http["replay"] / http["stored"])
                  / (http_small["replay"] / http_small["stored"]))
        ratios.append(Ratio.at_most(
            f"replay over HTTP, time per chunk: {http['stored']:,} chunks ÷ "
            f"{http_small['stored']:,}", growth, f"{growth:.2f}", GROWTH,
            goal=f"≤ {GROWTH:g} (linear in the session's length)"))
        raw[:0] = [
            ("helix serve + RemoteBackend (HTTP, SSE), stream from 0",
             f"{http['replay']:.3f} s for {http['stored']:,} chunks "
             f"({http['stored'] / http['replay']:,.0f}/s)"),
            ("one SQL query on the served object's file", f"{http['sql'] * 1000:.1f} ms"),
            ("building that session through helix serve (model → storage → SSE client)",
             f"{http['build']:.2f} s ({http['stored'] / http['build']:,.0f} chunks/s)"),
            ("helix serve + RemoteBackend, stream from 0, a short session",
             f"{http_small['replay'] * 1000:.1f} ms for {http_small['stored']:,} chunks "
             f"({http_small['stored'] / http_small['replay']:,.0f}/s)"),
        ]
        ratios.append(Ratio("replay in process (LocalBackend) ÷ one SQL query", local_ratio,
                            f"{local_ratio:.1f}x"))
    else:
        todo = ("`helix serve` was not available in this checkout: the HTTP figure is "
                "missing and the in-process figure stands in for it. Re-run `make bench` "
                "once `python -m helix_lab.cli serve` exists.")
        ratios.append(Ratio.at_most(
            "replay in process (LocalBackend) ÷ one SQL query [TODO: HTTP]", local_ratio,
            f"{local_ratio:.1f}x", GOAL, goal=f"≤ {GOAL:.0f}x (our target)"))
    return Figure(
        number=3, title="Replay from sequence 0",
        measures=f"Time to stream every stored chunk of a session ({deltas:,} text deltas "
        "plus the run's own chunks) to a client from sequence 0 (best of "
        f"{REPEAT}).",
        baseline="`SELECT * FROM helix_chunks ORDER BY sequence` with sqlite3, fetchall, on "
        f"the same file (best of {REPEAT}, each run right after a replay).",
        ratios=ratios, raw=raw, todo=todo,
        notes=[
            "A replay reads stored pages of 2,000 chunks; SQLite builds each page's whole "
            "text in one row (`read_text`: printf of each chunk's wire JSON, group_concat "
            "over the page), so the server runs no Python per chunk. RemoteBackend asks for "
            "the batched framing (`/sse?batch=1`): a page is one SSE event whose data is a "
            "JSON array, decoded with one msgspec call; the client then drops sequences it "
            "has already seen. Without `batch=1` a reader gets one event per chunk, also "
            "built by SQLite. LocalBackend reads the subscription directly: no SSE at all.",
            "The growth row compares the time per chunk of a long replay with a short "
            "one's (1,000 deltas): below 1 means the fixed cost of a request (the "
            "connection, the first page's query) outweighs any growth with the session's "
            "length, since each page is read by sequence from the index.",
            "Server and client are two processes here, so on an idle machine with two cores "
            "they overlap; on a shared one they take turns, and the ratio grows with the "
            "load beside it.",
            "Where the time goes (cProfile of the client over three replays, 1.0 s "
            "profiled on the shared machine; per replay): msgspec decoding the pages "
            "0.09 s, the stream's dedupe and yields 0.05 s and the caller's loop 0.02 s, "
            "the SSE scan 0.03 s, httpx reading the socket most of the rest; it waits on "
            "the server about 0.01 s. The server (py-spy) spends 81% of its time in SQLite "
            "running the page query (printf of each chunk's wire JSON, group_concat), the "
            "rest in the stand-in's stream pump and uvicorn's writes. Changed for issue 9 "
            "(6.4x before, on a quiet machine): pages built by SQLite in one row, the "
            "batched framing, msgspec, and a decoder that searches only each read's new "
            "text.",
        ],
        plan=None if all(r.met is not False for r in ratios) else (
            "The client's share is the floor of a client that hands out dicts (decoding "
            "JSON, one yield per chunk); the server's is SQLite formatting each row. "
            "Next: a client option that yields the raw JSON text for callers that only "
            "forward it, and a page query that formats only the fields that vary."),
    )
