"""Load: 200 concurrent streaming sessions, on ``helix serve`` and in process.

``helix serve`` runs as a real subprocess (``python -m helix_lab.cli serve``) with the
bundled example agents and the offline model; the client is :class:`RemoteBackend` over
HTTP with the bearer token (the agents and model come from :mod:`load_agents`). Each of 200 sessions starts a ``researcher`` run and streams
it to the end, however long that takes; then it sends a follow-up message whenever a run
completes, until a load window from its start (5 s; 3 s in process) is over. Then the
clients hang up, the host is shut down with its runs still going, and restarted.

No assertion depends on how fast the machine is: every session must stream its first run
to completion, and the only deadline (``HANG``) is there to catch a hang. The window sizes
the load; it is not a pass mark, and neither are the latencies or the duration.

- Every session streams, and its first run completes.
- Errors must be 0: no exception in any client, no ``run_failed`` chunk, no run ending
  other than ``completed``, and ``helix serve`` logs nothing at warning level or above.
- Chunk latency is the time from a chunk's ``timestamp`` (when the server numbered it) to
  the moment the client's stream yields it. p50/p90/p99 are printed (``pytest -s``) and
  written to ``artifacts/load.json`` for the benchmarks' RESULTS.md (``*_soak`` keys
  under ``--soak``).
- Requests to one session are serialized. On the idle server, a burst of concurrent
  ``POST /start`` to one session is accepted once and answered 409 otherwise, and so is a
  burst of ``POST /resume`` to an interrupted one. Under the load, more start bursts: each
  accepted request is exactly one run, every other answer a 409, and no two runs of a
  session ever overlap. A burst's run waits at its gate (:mod:`load_agents`) until the
  burst has been answered, so it is still going however fast the machine is.
- After the restart every session is consistent: not executing, ``completed`` or
  ``interrupted``, sequences 1..N with N its ``lastSequence``, and every chunk a client
  received is stored with the same type.

The same load runs in process (``LocalBackend`` on a ``LocalNamespace``) to separate the
runtime's own cost from HTTP's. ``--soak`` runs 400 sessions for 60 s instead of 200 for
5 s (3 s in process).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from load_agents import gated_adapter, registry
from rel_helpers import assert_contiguous

from helix_lab.client.backend import Backend, LocalBackend, RemoteBackend
from helix_lab.errors import BackendError
from helix_lab.runtime import LocalNamespace, create_agent_server

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
ARTIFACT = Path(os.environ.get("HELIX_LOAD_ARTIFACT", ROOT / "artifacts" / "load.json"))
"""Where the figures go; ``python -m benchmarks`` points it at its own scratch file."""
QUESTIONS = ["Tell me about sea otters", "What do octopuses do?", "How do tides work?",
             "Tell me about kelp forests", "What do crows remember?"]
BURST = 12
HANG = 600.0
"""Seconds the whole load may take before the test calls it a hang (it takes seconds)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def assert_runs_never_overlap(chunks: list[dict[str, Any]], where: str) -> int:
    """Each run of a session begins after the previous one ended; returns the run count."""
    running, runs = None, 0
    for chunk in chunks:
        if chunk["type"] in ("run_started", "run_resumed"):
            assert running is None, f"{where}: run {chunk['runId']} began inside {running}"
            running, runs = chunk["runId"], runs + 1
        elif chunk["type"] in ("run_completed", "run_failed", "run_interrupted"):
            running = None
    return runs


async def post(backend: Backend, sid: str, endpoint: str, body: dict[str, Any]) -> int:
    """200, or 409; anything else fails the test."""
    try:
        await backend.request(sid, "POST", endpoint, json=body)
        return 200
    except BackendError as exc:
        assert exc.status == 409, f"{sid} {endpoint}: {exc.status} {exc}"
        return 409


async def start_burst(backend: Backend, sid: str) -> list[int]:
    body = {"agentType": "briefing", "sessionId": sid, "input": {"message": "sea otters"}}
    return list(await asyncio.gather(*(post(backend, sid, "/start", body)
                                       for _ in range(BURST))))


async def exact_bursts(backend: Backend, prefix: str, gates: Path,
                       count: int = 3) -> dict[str, list[int]]:
    """On an idle host: a start burst and a resume burst are each accepted exactly once.

    The sessions are ``*-held-*``: their runs wait at the gate until the burst has been
    answered, so every request of a burst lands while the accepted one's run goes on."""

    async def starts(i: int) -> tuple[str, list[int]]:
        sid = f"{prefix}-held-starts-{i}"
        answers = await start_burst(backend, sid)
        (gates / sid).touch()
        assert sorted(answers) == [200] + [409] * (BURST - 1), (sid, answers)
        return sid, answers

    async def resumes(i: int) -> tuple[str, list[int]]:
        sid = f"{prefix}-held-resumes-{i}"
        await backend.start("briefing", "sea otters", session_id=sid)
        status = await backend.request(sid, "POST", "/interrupt", json={"reason": "burst"})
        assert status["status"] == "interrupted", status
        answers = list(await asyncio.gather(*(post(backend, sid, "/resume", {"agentType": "briefing"})
                                              for _ in range(BURST))))
        (gates / sid).touch()
        assert sorted(answers) == [200] + [409] * (BURST - 1), (sid, answers)
        return sid, answers

    done = await asyncio.gather(*(f(i) for i in range(count) for f in (starts, resumes)))
    return dict(done)


@dataclass
class Load:
    """``sessions`` clients streaming for ``duration`` seconds; keeps what they saw."""

    backends: list[Backend]
    sessions: int
    duration: float
    prefix: str
    gates: Path
    latencies: list[float] = field(default_factory=list)
    first_chunk: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: int = 0
    completed_first: set[str] = field(default_factory=set)
    """Sessions whose first run streamed to its end and completed."""
    seen: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    bursts: dict[str, list[int]] = field(default_factory=dict)

    async def session(self, index: int) -> None:
        """Start a run and stream it to its end; then send again after each run until
        ``duration`` seconds from the start have passed, and hang up mid-run."""
        sid = f"{self.prefix}-{index}"
        seen = self.seen.setdefault(sid, [])
        backend = self.backends[index % len(self.backends)]
        loop = asyncio.get_running_loop()
        window_end = loop.time() + self.duration
        try:
            asked = time.time()
            handle = await backend.start("researcher", QUESTIONS[index % len(QUESTIONS)],
                                         session_id=sid)
            first_run = True
            while True:
                # The first run streams to its end whatever the machine's speed; later
                # runs only while the window lasts.
                async with asyncio.timeout_at(None if first_run else window_end):
                    first = True
                    async for chunk in handle.stream(seen[-1][0] if seen else 0):
                        now = time.time() * 1000
                        if first:
                            self.first_chunk.append(now - asked * 1000)
                            first = False
                        self.latencies.append(now - chunk["timestamp"])
                        seen.append((chunk["sequence"], chunk["type"]))
                        if chunk["type"] == "run_failed":
                            self.errors.append(f"{sid}: run_failed {chunk.get('error')}")
                    status = await handle.status()
                if status["status"] != "completed":
                    self.errors.append(f"{sid}: a run ended {status['status']}")
                    return
                self.runs += 1
                if first_run:
                    self.completed_first.add(sid)
                    first_run = False
                if loop.time() >= window_end:
                    return
                asked = time.time()
                handle = await handle.send(QUESTIONS[(index + self.runs) % len(QUESTIONS)])
        except TimeoutError:
            pass  # the window is over: the client hangs up mid-run
        except Exception as exc:
            self.errors.append(f"{sid}: {type(exc).__name__}: {exc}")

    async def bursts_under_load(self, count: int = 4) -> None:
        await asyncio.sleep(self.duration / 3)
        sids = [f"{self.prefix}-held-loaded-starts-{i}" for i in range(count)]
        answers = await asyncio.gather(*(
            start_burst(self.backends[i % len(self.backends)], sid) for i, sid in enumerate(sids)))
        for sid in sids:
            (self.gates / sid).touch()
        self.bursts.update(zip(sids, answers, strict=True))

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        bursts = asyncio.ensure_future(self.bursts_under_load())
        await asyncio.wait_for(asyncio.gather(*(self.session(i) for i in range(self.sessions))),
                               HANG)
        await asyncio.wait_for(bursts, HANG)
        elapsed = time.monotonic() - started
        chunks = sum(len(v) for v in self.seen.values())
        return {
            "sessions": self.sessions, "boundS": self.duration, "durationS": round(elapsed, 2),
            "runsCompleted": self.runs, "chunks": chunks, "chunksPerS": round(chunks / elapsed),
            "sessionsStreamed": sum(1 for seen in self.seen.values() if seen),
            "sessionsCompletedFirstRun": len(self.completed_first),
            "latencyMs": {"p50": round(percentile(self.latencies, 50), 1),
                          "p90": round(percentile(self.latencies, 90), 1),
                          "p99": round(percentile(self.latencies, 99), 1),
                          "max": round(max(self.latencies, default=float("nan")), 1)},
            "firstChunkMs": {"p50": round(percentile(self.first_chunk, 50), 1),
                             "p99": round(percentile(self.first_chunk, 99), 1)},
            "errors": len(self.errors),
        }


async def verify_after_restart(backend: Backend, load: Load,
                               exact: dict[str, list[int]]) -> None:
    """Every session is consistent, and holds every chunk its client saw."""

    async def one(sid: str) -> None:
        handle = backend.handle(sid)
        status = await handle.status()
        assert not status["isExecuting"], status
        assert status["status"] in ("completed", "interrupted"), status
        chunks: list[dict[str, Any]] = []
        while True:
            page = await handle.history(chunks[-1]["sequence"] if chunks else 0, 2000)
            chunks += page["chunks"]
            if not page["hasMore"]:
                break
        assert_contiguous([c["sequence"] for c in chunks], 1, sid)
        assert chunks[-1]["sequence"] == status["lastSequence"], sid
        stored = {c["sequence"]: c["type"] for c in chunks}
        seen = load.seen.get(sid, [])
        assert_contiguous([s for s, _ in seen], 1, f"{sid} (client view)")
        assert all(stored.get(s) == t for s, t in seen), f"{sid}: a chunk the client saw is gone"
        assert not any(c["type"] == "run_failed" for c in chunks), sid
        runs = assert_runs_never_overlap(chunks, sid)
        answers = load.bursts.get(sid) or exact.get(sid)
        if answers is not None:
            assert answers.count(200) + answers.count(409) == BURST, answers
            assert answers.count(409) >= 1, answers
            expected = 2 if "-resumes-" in sid else answers.count(200)
            assert runs == expected, (sid, answers, runs)

    sids = [*load.seen, *load.bursts, *exact]
    gate = asyncio.Semaphore(50)

    async def limited(sid: str) -> None:
        async with gate:
            await one(sid)

    await asyncio.gather(*(limited(sid) for sid in sids))


def record(name: str, figures: dict[str, Any]) -> None:
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(ARTIFACT.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = {**figures, "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    ARTIFACT.write_text(json.dumps(data, indent=2) + "\n")
    lat = figures["latencyMs"]
    print(f"\n[load:{name}] {figures['sessions']} sessions streaming for {figures['boundS']} s: "
          f"{figures['chunks']} chunks ({figures['chunksPerS']}/s), {figures['runsCompleted']} "
          f"runs completed; chunk latency p50 {lat['p50']} ms, p90 {lat['p90']} ms, "
          f"p99 {lat['p99']} ms, max {lat['max']} ms; first chunk p50 "
          f"{figures['firstChunkMs']['p50']} ms; errors {figures['errors']}")


async def exercise(backends: list[Backend], sessions: int, duration: float, prefix: str,
                   gates: Path, restart: Callable[[], Awaitable[Backend]]) -> dict[str, Any]:
    """Bursts on the idle host, the load, a host restart, and the checks after it."""
    exact = await exact_bursts(backends[0], f"{prefix}-idle", gates)
    load = Load(backends, sessions, duration, prefix, gates)
    figures = await load.run()
    assert not load.errors, load.errors[:10]
    assert figures["sessionsStreamed"] == sessions  # every session really streamed
    assert figures["sessionsCompletedFirstRun"] == sessions
    figures["serialized"] = {"burstSize": BURST, "idleBursts": len(exact),
                             "loadedBursts": len(load.bursts),
                             "loadedAccepted": [a.count(200) for a in load.bursts.values()]}
    after = await restart()
    await verify_after_restart(after, load, exact)
    return figures


# -- helix serve --------------------------------------------------------------------------------


async def start_serve(storage: Path, token: str,
                      gates: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "HELIX_TOKEN": token, "HELIX_LOAD_GATE": str(gates),
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "helix_lab.cli", "serve", "--host", "127.0.0.1", "--port", "0",
        "--storage", str(storage), "--agents", "load_agents", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT))
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    if match is None:
        proc.kill()
        raise AssertionError(f"helix serve did not start: {line!r}")
    return proc, match.group(1)


async def stop_serve(proc: asyncio.subprocess.Process) -> str:
    """Ctrl-C, as a user would; returns what the server wrote to stderr."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("helix serve did not stop within 60 s of SIGINT") from None
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode()


def remote(url: str, token: str) -> RemoteBackend:
    # Plain HTTP: verify=False skips loading the CA bundle (20 ms a client). No pool limit:
    # each client carries the streams of several sessions.
    return RemoteBackend(url, token=token, timeout=60, transport=httpx.AsyncHTTPTransport(
        verify=False, limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)))


@pytest.mark.timeout(HANG + 300)
async def test_200_concurrent_sessions_stream_on_helix_serve(tmp_path: Path, soak: bool) -> None:
    sessions, duration = (400, 60.0) if soak else (200, 5.0)
    token = secrets.token_urlsafe(24)
    storage, gates = tmp_path / "serve", tmp_path / "gates"
    gates.mkdir()
    procs: list[asyncio.subprocess.Process] = []
    backends: list[RemoteBackend] = []
    logs: list[str] = []

    async def restart() -> Backend:
        for backend in backends:
            await backend.aclose()
        logs.append(await stop_serve(procs[-1]))
        proc, url = await start_serve(storage, token, gates)
        procs.append(proc)
        backends.append(remote(url, token))
        return backends[-1]

    proc, url = await start_serve(storage, token, gates)
    procs.append(proc)
    # A client per ten sessions, as users would have their own: one httpx pool holding
    # hundreds of connections costs the client more than the server (its pool is O(n^2)).
    clients = [remote(url, token) for _ in range(sessions // 10)]
    backends.extend(clients)
    try:
        assert await clients[0].health()
        figures = await exercise(list(clients), sessions, duration, "serve", gates, restart)
    finally:
        for backend in backends:
            await backend.aclose()
        for proc in procs:
            if proc.returncode is None:
                logs.append(await stop_serve(proc))
    record("serve_soak" if soak else "serve", figures)
    for log in logs:
        assert not re.search(r"Traceback|ERROR|WARNING|Exception", log), log[-3000:]


@pytest.mark.timeout(HANG + 300)
async def test_200_concurrent_sessions_stream_in_process(tmp_path: Path, soak: bool) -> None:
    sessions, duration = (400, 60.0) if soak else (200, 3.0)
    gates = tmp_path / "gates"
    gates.mkdir()
    server = create_agent_server(llm_adapter=gated_adapter(gates), agents=registry)
    storage = str(tmp_path / "local")
    opened: list[tuple[LocalNamespace, LocalBackend]] = []

    def open_host() -> LocalBackend:
        namespace = LocalNamespace(server, storage=storage)
        opened.append((namespace, LocalBackend(namespace)))
        return opened[-1][1]

    async def restart() -> Backend:
        namespace, backend = opened[-1]
        await backend.aclose()
        await namespace.aclose()  # the host stops with its runs still going
        return open_host()

    try:
        figures = await exercise([open_host()], sessions, duration, "local", gates, restart)
    finally:
        for namespace, backend in opened:
            await backend.aclose()
            await namespace.aclose()
    record("in_process_soak" if soak else "in_process", figures)
