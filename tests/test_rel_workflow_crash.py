"""Workflows recovery: SIGKILL the host mid-run; the instance continues by itself on the
next access, and no completed step runs again.

The child (``rel_workflow_crash_child.py``) runs a three-unit agent whose model is the
real ``anthropic`` SDK against the fake Messages API served here, and is killed just
after a chosen step is stored. Then this process opens the same storage, as a restarted
kernel would, and only asks for the session's handle. The run must finish with:

- one model request per model step, in all (the fake server counts them), each sent the
  conversation as it stood, so no request was repeated;
- one call per tool call (a file the tool appends to counts them across processes);
- every stored step at attempt 1, and one ``workflow_resumed`` chunk naming how many
  steps were served from storage;
- a stream whose sequences run 1..N with no gap or repeat, and whose first chunks are the
  ones the killed client had already seen.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import rel_workflow_crash_child as child
from fakes.anthropic_server import FakeAnthropic, Text, ToolUse, turn

CHILD = Path(child.__file__).resolve()
ROOT = CHILD.parents[1]
DEADLINE = 60.0  # only catches hangs


async def run_until_killed(storage: Path, base_url: str, tool_log: Path,
                           stop: str) -> tuple[list[str], list[tuple[int, str]]]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(storage), base_url, str(tool_log), stop,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    done: list[str] = []
    seen: list[tuple[int, str]] = []
    killed = False
    try:
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
            if not raw:
                break
            kind, _, rest = raw.decode().strip().partition(" ")
            if kind == "CHUNK":
                sequence, chunk_type = rest.split()
                seen.append((int(sequence), chunk_type))
            elif kind == "STEP_DONE" and not killed:
                done.append(rest)
                if rest == stop:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
        code = await asyncio.wait_for(proc.wait(), DEADLINE)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await proc.stderr.read()).decode()
    assert killed, f"the child never reached {stop!r}\n{stderr}"
    assert code == -signal.SIGKILL, stderr
    assert "Traceback" not in stderr, stderr
    return done, seen


@pytest.mark.parametrize("stop", ["initialize", "commit 1", "tool 2.0 work", "model 3",
                                  "commit 3"])
async def test_a_killed_host_continues_on_next_access_and_repeats_nothing(tmp_path, stop,
                                                                          monkeypatch):
    storage, tool_log = tmp_path / "wf", tmp_path / "tools.log"
    monkeypatch.setenv("HELIX_TOOL_LOG", str(tool_log))  # this process's tool calls, too
    with FakeAnthropic() as fake:
        fake.push(*(turn(Text(f"Unit {n}."), ToolUse("work", {"n": n}, id=f"toolu_{n}"))
                    for n in (1, 2, 3)),
                  turn(Text("All 3 units are done.")))
        done, seen = await run_until_killed(storage, fake.base_url, tool_log, stop)
        requests_before = len(fake.requests)
        assert requests_before == sum(1 for name in done if name.startswith("model "))

        wf = child.build(storage, fake.base_url)
        handle = await wf.executor.get_handle(child.AGENT, child.SESSION)  # no other action
        result = await asyncio.wait_for(handle.result(), DEADLINE)
        assert result == "All 3 units are done."

        # One request per model step, each one conversation longer than the last.
        assert len(fake.requests) == 4
        assert [len(r.json()["messages"]) for r in fake.requests] == [1, 3, 5, 7]
        assert tool_log.read_text().split() == ["1", "2", "3"]

        status = await handle.status()
        assert status["status"] == "completed" and status["instanceStatus"] == "complete"
        assert all(s["attempts"] == 1 and s["state"] == "done" for s in status["steps"])
        names = [s["name"] for s in status["steps"]]
        assert len(names) == len(set(names))

        chunks = [c async for c in handle.stream()]
        assert [c["sequence"] for c in chunks] == list(range(1, len(chunks) + 1))
        assert [(c["sequence"], c["type"]) for c in chunks[:len(seen)]] == seen
        ran = [c["name"] for c in chunks if c["type"] == "workflow_step"]
        assert len(ran) == len(set(ran)) == len(names) - 1  # "end stream" is quiet
        resumed = [c for c in chunks if c["type"] == "workflow_resumed"]
        assert len(resumed) == 1 and resumed[0]["memoizedSteps"] == len(done)
        assert [c["type"] for c in chunks].count("run_completed") == 1
        await wf.aclose()
