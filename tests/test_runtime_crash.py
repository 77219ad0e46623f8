"""A host killed with SIGKILL mid-step, in a separate process, and the session found again.

The child process runs a scripted agent on sqlite files under ``tmp_path``: steps 1 and 2
commit, step 3 stages a state change and then hangs in a tool. The child reports the
step-2 checkpoint id as it is streamed (a chunk is streamed only once it is stored), then
that the tool hangs; the test kills it. A new ``LocalNamespace`` on the same storage must
find the run ``interrupted`` at step 2, with nothing committed lost and nothing staged
kept, and resume it to the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from helpers import (
    CRASH_SESSION,
    Runtime,
    assert_contiguous,
    crash_agent,
    crash_turns,
    of_type,
    stored_files,
)

from helix_lab.llm import ScriptedLLM, Turn, call

TESTS = Path(__file__).resolve().parent

CHILD = """
import asyncio, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from helpers import CRASH_SESSION, Runtime, crash_agent, crash_turns
from helix_lab.llm import ScriptedLLM


async def main(storage: str) -> None:
    rt = Runtime(storage, [crash_agent()], ScriptedLLM(crash_turns()))
    handle = await rt.backend.start("crashy", "note three words", session_id=CRASH_SESSION)
    async for chunk in handle.stream():
        if chunk["type"] == "checkpoint" and chunk["step"] == 2:
            print("CHECKPOINTED " + json.dumps(chunk), flush=True)


asyncio.run(main(sys.argv[3]))
"""


async def read_lines(stream: asyncio.StreamReader, prefixes: set[str],
                     seen: list[str]) -> dict[str, str]:
    """The child's first line starting with each prefix, in whatever order they come: the
    tool that hangs and the stream reader that reports step 2 race each other."""
    found: dict[str, str] = {}
    while len(found) < len(prefixes):
        # A deadline that only catches a hang: the child needs well under a second.
        line = (await asyncio.wait_for(stream.readline(), 120)).decode()
        if not line:
            raise AssertionError(f"the child exited before {sorted(prefixes - set(found))}; "
                                 f"it said {seen}")
        seen.append(line)
        found.update({p: line for p in prefixes if line.startswith(p) and p not in found})
    return found


async def run_and_kill(tmp_path: Path, storage: Path) -> dict[str, Any]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(TESTS), str(TESTS.parent), str(storage),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        # HANGING: step 3 has staged "c" and hangs in its tool.
        line = (await read_lines(proc.stdout, {"CHECKPOINTED ", "HANGING"}, seen))[
            "CHECKPOINTED "]
        assert proc.returncode is None, "the child must still be running when it is killed"
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return json.loads(line.split(" ", 1)[1])


async def test_a_killed_host_leaves_a_resumable_interrupted_run(tmp_path: Path) -> None:
    storage = tmp_path / "helix"
    step2 = await run_and_kill(tmp_path, storage)
    assert [f for f in stored_files(storage) if f.endswith(".sqlite3")], "the child wrote nothing"

    llm = ScriptedLLM([Turn(text="All three noted.", tool_calls=[call("remember", word="c")]),
                       "Done: a, b, c."])
    rt = Runtime(storage, [crash_agent()], llm)
    try:
        handle = rt.backend.handle(CRASH_SESSION, "crashy")
        status = await handle.status()
        assert status["status"] == "interrupted", "recovered on first load"
        assert status["canResume"] and not status["isExecuting"]
        assert status["stepCount"] == 2 and status["checkpointId"] == step2["checkpointId"]

        chunks = await rt.chunks(CRASH_SESSION)
        assert_contiguous(chunks)
        assert chunks[-1]["type"] == "run_interrupted"
        assert chunks[-1]["reason"] == "host_restarted"
        assert chunks[-1]["checkpointId"] == step2["checkpointId"]
        assert chunks[-1]["runId"] == step2["runId"]
        assert step2 in chunks, "the chunk the child streamed is stored as it was"
        assert [c["type"] for c in chunks].count("run_interrupted") == 1

        cps = await handle.checkpoints()
        assert [(c["step"], c["status"]) for c in cps] == [(0, "running"), (1, "running"),
                                                          (2, "running")]
        assert cps[-1]["checkpointId"] == step2["checkpointId"]
        states = [(await handle.checkpoint(c["checkpointId"]))["state"] for c in cps]
        assert states == [{"notes": []}, {"notes": ["a"]}, {"notes": ["a", "b"]}]
        assert await handle.get_state() == {"notes": ["a", "b"]}, "the staged 'c' is gone"
        committed = await handle.messages()
        assert len(committed) == 5 and committed[0]["content"] == "note three words"
        assert [m["content"][0]["text"] for m in committed[1::2]] == ["First a.", "Then b."]

        resumed = await handle.resume()
        assert await resumed.result() == "Done: a, b, c."
        assert llm.requests[0].messages == committed
        final = await resumed.messages()
        assert final[:5] == committed and len(final) == 8
        assert await resumed.get_state() == {"notes": ["a", "b", "c"]}
        everything = await rt.chunks(CRASH_SESSION)
        assert_contiguous(everything)
        assert everything[:len(chunks)] == chunks
        assert everything[-1]["type"] == "run_completed"
        [resumed_chunk] = of_type(everything, "run_resumed")
        assert resumed_chunk["fromCheckpointId"] == step2["checkpointId"]
        assert rt.violations == []
    finally:
        await rt.close()


async def test_reopening_a_cleanly_finished_session_changes_nothing(tmp_path: Path) -> None:
    storage = tmp_path / "helix"
    turns = [*crash_turns()[:2], "finished"]
    first = Runtime(storage, [crash_agent()], ScriptedLLM(turns))
    try:
        await first.run(CRASH_SESSION, agent_type="crashy")
        before = await first.chunks(CRASH_SESSION)
    finally:
        await first.close()
    again = Runtime(storage, [crash_agent()], ScriptedLLM([]))
    try:
        status = await again.get(CRASH_SESSION, "/status")
        assert status["status"] == "completed" and status["output"] == "finished"
        assert await again.chunks(CRASH_SESSION) == before, "no recovery chunk for a done run"
    finally:
        await again.close()
