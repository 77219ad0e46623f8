"""Crash reliability: SIGKILL the host process at seeded random moments, then check storage.

Each trial runs ``rel_crash_child.py`` (three concurrent sessions of a tool-using agent on
sqlite files, each streamed by a client) and kills it with SIGKILL at a seeded moment of
one of three kinds:

- ``llm``: just after the client received the n-th ``text_delta``, while a model streams;
- ``tool``: while a tool sleeps, after the n-th tool call began;
- ``commit``: inside a step's transaction, after the n-th checkpoint row was written and
  before it commits (the child pauses there).

Then the storage is reopened by a new namespace, as a restarted kernel would, and every
session must be consistent: found ``interrupted`` (or ``completed``), its last checkpoint
loads, the head's message count equals ``/messages``, sequences run 1..N, usage has one
``llm`` entry per committed step, the state agrees with the messages, and every chunk the
client saw before the kill is stored with the same type. ``resume`` then finishes the run;
a client that carries on from the last sequence it saw gets every later chunk exactly once.

Seven trials per kind (21 in all) by default, forty per kind with ``--soak``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import rel_crash_child as child
from helpers import of_type
from rel_helpers import assert_contiguous, history

from helix_lab.client.backend import LocalBackend
from helix_lab.runtime import LocalNamespace

CHILD = Path(child.__file__).resolve()
ROOT = CHILD.parents[1]
SESSIONS = 3
PARALLEL = 3


class Trial:
    def __init__(self, phase: str, seed: int, storage: Path) -> None:
        self.phase, self.seed, self.storage = phase, seed, storage
        self.observed: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.killed = False
        self.lines: list[str] = []
        self.kill_after: str = ""
        self.unstored = 0
        """Sessions whose start was cut inside its first commit: nothing of them is stored."""

    def __repr__(self) -> str:
        return f"trial(phase={self.phase}, seed={self.seed}, kill after {self.kill_after})"


def kill_plan(phase: str, seed: int) -> tuple[str, str | None, int, float]:
    """(marker, chunk type or None, which occurrence, extra delay in seconds)."""
    rng = random.Random(f"{phase}:{seed}")
    if phase == "llm":
        return "CHUNK", "text_delta", rng.randint(1, 40), rng.uniform(0.0, 0.004)
    if phase == "tool":
        return "TOOL_IN", None, rng.randint(1, 3 * SESSIONS), rng.uniform(0.0, 0.018)
    # Spread over the first commits (each run's start, which also creates its session)
    # and the later ones (the steps), whatever the number of trials.
    nth = 1 + (seed * 5) % (4 * SESSIONS)
    return "COMMIT_IN", None, nth, rng.uniform(0.0, 0.02)


async def run_child(trial: Trial) -> None:
    """Run the child until the planned moment, SIGKILL it, and keep what it printed."""
    marker, chunk_type, nth, extra = kill_plan(trial.phase, trial.seed)
    trial.kill_after = f"{marker}#{nth}+{extra * 1000:.1f}ms"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(trial.storage), str(trial.seed), str(SESSIONS),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    seen = 0
    try:
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not raw:
                break
            line = raw.decode().strip()
            trial.lines.append(line)
            parts = line.split()
            if parts[0] == "CHUNK":
                trial.observed[parts[1]].append((int(parts[2]), parts[3]))
            if trial.killed:
                continue  # keep reading what the child printed before it died
            if parts[0] == marker and (chunk_type is None or parts[3] == chunk_type):
                seen += 1
                if seen == nth:
                    if extra:
                        await asyncio.sleep(extra)
                    proc.send_signal(signal.SIGKILL)
                    trial.killed = True
        code = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await proc.stderr.read()).decode()
    assert trial.killed, f"{trial}: the child finished before the kill point\n{stderr}"
    assert code == -signal.SIGKILL, f"{trial}: exit code {code}\n{stderr}"
    assert "Traceback" not in stderr, f"{trial}: the child failed before the kill\n{stderr}"


def check_messages(trial: Trial, sid: str, messages: list[dict[str, Any]], steps: int,
                   completed: bool) -> int:
    """The message prefix is whole: the request, then per step an assistant turn and (for
    a tool step) its tool result. Returns the number of tool results."""
    where = f"{trial} {sid}"
    assert messages and messages[0]["role"] == "user", where
    assert "steps=" in messages[0]["content"], where
    assistants = [m for m in messages if m["role"] == "assistant"]
    assert len(assistants) == steps, f"{where}: {len(assistants)} assistant turns, head step {steps}"
    results = 0
    for i, message in enumerate(messages[1:], start=1):
        if message["role"] != "assistant":
            continue
        uses = [b for b in message["content"] if b["type"] == "tool_use"]
        if not uses:
            assert completed and i == len(messages) - 1, f"{where}: a text turn mid-history"
            continue
        assert i + 1 < len(messages), f"{where}: a tool call without its result: {messages}"
        reply = messages[i + 1]
        assert reply["role"] == "user", where
        ids = [b["tool_use_id"] for b in reply["content"] if b["type"] == "tool_result"]
        assert ids == [u["id"] for u in uses], where
        assert not any(b["is_error"] for b in reply["content"]), f"{where}: {reply}"
        assert uses[0]["input"] == {"n": results + 1}, f"{where}: {uses}"
        results += 1
    return results


async def check_session(trial: Trial, backend: LocalBackend, sid: str, *,
                        after_crash: bool) -> dict[str, Any]:
    """Everything stored for ``sid`` agrees with itself. Returns the status."""
    where = f"{trial} {sid}"
    handle = backend.handle(sid, child.AGENT)
    status = await handle.status()
    assert not status["isExecuting"], where
    if after_crash:
        assert status["status"] in ("interrupted", "completed"), f"{where}: {status}"
    else:
        assert status["status"] == "completed", f"{where}: {status}"

    chunks = await history(handle)
    assert_contiguous([c["sequence"] for c in chunks], 1, where)
    assert chunks and chunks[-1]["sequence"] == status["lastSequence"], where
    by_sequence = {c["sequence"]: c for c in chunks}

    # Nothing a client saw is lost, and nothing changed type.
    seen = trial.observed.get(sid, [])
    assert_contiguous([s for s, _ in seen], 1, f"{where} (client view)")
    for sequence, kind in seen:
        assert sequence in by_sequence, f"{where}: the client saw #{sequence} {kind}; it is gone"
        assert by_sequence[sequence]["type"] == kind, f"{where}: #{sequence} changed type"

    checkpoints = await handle.checkpoints()
    ids = [c["checkpointId"] for c in checkpoints]
    assert len(set(ids)) == len(ids), f"{where}: duplicate checkpoint ids"
    last = checkpoints[-1]
    assert status["checkpointId"] == last["checkpointId"], f"{where}: head is not the last"
    head = await handle.checkpoint(last["checkpointId"])
    assert head["step"] == status["stepCount"], where
    for cp in checkpoints:  # each checkpoint's chunk was stored with it
        chunk = by_sequence.get(cp["sequence"])
        assert chunk is not None and chunk["type"] == "checkpoint", f"{where}: {cp}"
        assert chunk["checkpointId"] == cp["checkpointId"], f"{where}: {cp} vs {chunk}"
        assert cp["sequence"] <= status["lastSequence"], where
    steps = [cp["step"] for cp in checkpoints]
    assert steps == sorted(steps), f"{where}: checkpoint steps go backwards: {steps}"

    messages = await handle.messages()
    assert head["messageCount"] == len(messages), (
        f"{where}: head says {head['messageCount']} messages, /messages has {len(messages)}")
    completed = status["status"] == "completed"
    results = check_messages(trial, sid, messages, head["step"], completed)
    state = head["state"]
    assert state == {"count": results, "seen": list(range(1, results + 1))}, (
        f"{where}: the state does not match the committed tool results: {state}")

    usage = await handle.usage()
    llm_steps = sorted(e["step"] for e in usage["entries"] if e["kind"] == "llm")
    assert llm_steps == list(range(1, head["step"] + 1)), (
        f"{where}: llm usage steps {llm_steps} for head step {head['step']}")
    assert all(e["step"] <= head["step"] for e in usage["entries"]), where
    assert usage["rollup"]["total"]["inputTokens"] == sum(
        e["inputTokens"] for e in usage["entries"]), where

    if status["status"] == "interrupted":
        final = chunks[-1]
        assert final["type"] == "run_interrupted", f"{where}: {final}"
        assert final["reason"] == "host_restarted", f"{where}: {final}"
        assert final["checkpointId"] == status["checkpointId"], where
        assert status["canResume"], where
    if completed:
        assert status["output"] == f"All units are done: finished {results} units.", where
        assert chunks[-1]["type"] == "run_completed", where
    return status


async def verify(trial: Trial) -> None:
    """Reopen the storage as a restarted host would, check it, resume, check again."""
    namespace = LocalNamespace(child.build_server(), storage=str(trial.storage))
    backend = LocalBackend(namespace)
    try:
        resumed = 0
        for i in range(SESSIONS):
            sid = f"s{i}"
            handle = backend.handle(sid, child.AGENT)
            status = await handle.status()
            if status["sessionId"] is None:
                # Killed before this session's start committed: nothing of it is stored,
                # and starting it now works.
                trial.unstored += 1
                assert not trial.observed.get(sid), f"{trial} {sid}: chunks but no session"
                assert (await handle.history())["chunks"] == [], f"{trial} {sid}"
                await backend.start(child.AGENT, "Please do steps=3 units of work.",
                                    session_id=sid)
                assert await handle.result() == "All units are done: finished 3 units."
                await check_session(trial, backend, sid, after_crash=False)
                continue
            status = await check_session(trial, backend, sid, after_crash=True)
            if status["status"] != "interrupted":
                continue
            resumed += 1
            # A client that was streaming carries on from the last sequence it saw.
            last_seen = trial.observed[sid][-1][0] if trial.observed.get(sid) else 0
            before = status["lastSequence"]
            await handle.resume()
            later = [c async for c in handle.stream(last_seen)]
            final = await check_session(trial, backend, sid, after_crash=False)
            assert_contiguous([c["sequence"] for c in later], last_seen + 1,
                              f"{trial} {sid} after resume")
            assert later[-1]["sequence"] == final["lastSequence"], f"{trial} {sid}"
            resumed_chunks = [c for c in later if c["sequence"] > before]
            assert resumed_chunks[0]["type"] == "run_resumed", f"{trial} {sid}"
            assert len(of_type(resumed_chunks, "run_completed")) == 1, f"{trial} {sid}"
        expected = {namespace.id_from_name(f"session:s{i}") for i in range(SESSIONS)}
        assert set(namespace.stored_ids()) <= expected, f"{trial}: stray objects in storage"
        trial.lines.append(f"resumed {resumed}")
    finally:
        await backend.aclose()
        await namespace.aclose()


async def run_trials(phase: str, seeds: list[int], tmp_path: Path) -> list[Trial]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(seed: int) -> Trial:
        trial = Trial(phase, seed, tmp_path / f"{phase}-{seed}")
        async with gate:
            await run_child(trial)
        await verify(trial)
        return trial

    outcomes = await asyncio.gather(*(one(seed) for seed in seeds), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise AssertionError(f"{len(failures)} of {len(seeds)} {phase} trials failed:\n"
                             + "\n".join(f"- {f!r}"[:2000] for f in failures))
    return [o for o in outcomes if isinstance(o, Trial)]


@pytest.mark.parametrize("phase", ["llm", "tool", "commit"])
async def test_sigkill_at_random_points_leaves_every_session_consistent_and_resumable(
        phase: str, tmp_path: Path, soak: bool) -> None:
    trials = 40 if soak else 7
    seeds = [1000 * (1 + ["llm", "tool", "commit"].index(phase)) + i for i in range(trials)]
    done = await run_trials(phase, seeds, tmp_path)
    assert len(done) == trials and all(t.killed for t in done)
    # The kills really landed mid-run: most trials leave at least one session to resume.
    interrupted = sum(int(t.lines[-1].split()[1]) > 0 for t in done)
    assert interrupted >= trials * 0.7, [(t, t.lines[-1]) for t in done]
    if phase == "commit":  # some kills landed inside a session's very first commit
        assert any(t.unstored for t in done), done


# -- deterministic cases of the same promises ----------------------------------------------


async def _finished_session(storage: Path, sid: str = "d1") -> tuple[LocalNamespace, Any]:
    namespace = LocalNamespace(child.build_server(), storage=str(storage))
    backend = LocalBackend(namespace)
    await backend.start(child.AGENT, "Please do steps=1 units of work.", session_id=sid)
    assert await backend.handle(sid).result() == "All units are done: finished 1 units."
    await backend.aclose()
    return namespace, namespace.instance(namespace.id_from_name(f"session:{sid}"))


async def test_a_host_shutting_down_with_chunks_queued_stores_them_and_logs_nothing(
        tmp_path: Path) -> None:
    namespace, server = await _finished_session(tmp_path)
    problems: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    try:
        queued = server.stream.write({"type": "custom", "name": "late"})  # flush is scheduled
        # What a host does as it shuts down, before the scheduled flush has run.
        server.stream.close_all()
        server.sql.close()
        await asyncio.sleep(0.01)
        later = server.stream.write({"type": "custom", "name": "after close"})
        await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(previous)
        await namespace.aclose()
    assert problems == [], [p.get("exception") or p.get("message") for p in problems]
    reopened = LocalNamespace(child.build_server(), storage=str(tmp_path))
    backend = LocalBackend(reopened)
    try:
        chunks = await history(backend.handle("d1"))
        assert_contiguous([c["sequence"] for c in chunks], 1, "after shutdown")
        assert chunks[-1]["sequence"] == queued["sequence"] and chunks[-1]["name"] == "late"
        assert later["sequence"] == queued["sequence"] + 1  # numbered, never stored
    finally:
        await backend.aclose()
        await reopened.aclose()


async def test_a_start_whose_commit_fails_leaves_no_half_session_and_no_stray_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A storage failure inside the first commit (disk full, say) must not leave a session
    row without a checkpoint, which could never be started or resumed, nor chunks of a run
    that never began."""
    from helix_lab.runtime.state_store import DOStateStore

    original = DOStateStore.save_checkpoint
    failures = {"left": 1}

    def failing(self: DOStateStore, **kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk full")
        return original(self, **kwargs)

    monkeypatch.setattr(DOStateStore, "save_checkpoint", failing)
    namespace = LocalNamespace(child.build_server(), storage=str(tmp_path))
    backend = LocalBackend(namespace)
    handle = backend.handle("f1", child.AGENT)
    try:
        response = await backend.request("f1", "GET", "/status")
        assert response["sessionId"] is None
        from helix_lab.errors import BackendError

        with pytest.raises(BackendError) as info:
            await backend.start(child.AGENT, "Please do steps=1 units of work.", session_id="f1")
        assert info.value.status == 500
        await asyncio.sleep(0.01)  # let any scheduled flush run
        assert (await handle.status())["sessionId"] is None
        assert (await handle.history())["chunks"] == []
        await backend.start(child.AGENT, "Please do steps=1 units of work.", session_id="f1")
        assert await handle.result() == "All units are done: finished 1 units."
        chunks = await history(handle)
        assert_contiguous([c["sequence"] for c in chunks], 1, "after the failed start")
        assert [c["type"] for c in chunks].count("run_started") == 1
    finally:
        await backend.aclose()
        await namespace.aclose()
