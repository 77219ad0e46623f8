"""``.helix`` files: export a session from any backend, import it elsewhere, replay it offline.

The round trip runs on a LocalBackend and on ``helix serve``; the import lands in other
storage (as on another machine) and must read back the same status, checkpoints, messages,
chunks and usage. ``ReplayLLM.from_session`` then forks the imported session offline, in
this process and in a fresh one. Damaged and foreign files are refused with a clear error
and leave the storage as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import e2e_scenario
import pytest
from served import TOKEN, Served
from test_html_page import forked  # a stepper run of 3 steps, forked at step 1
from test_magics import Kernel, kernel, shell, shown  # noqa: F401

import helix_lab
from helix_lab import RemoteBackend
from helix_lab.errors import NotFoundError, UserError
from helix_lab.llm import ReplayLLM
from helix_lab.llm.base import LLMRequest
from helix_lab.llm.cassette import CassetteMismatch
from helix_lab.session_file import SessionFile, SessionFileError, export_session, import_session

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


class NoNetwork:
    """A model that must not be called: an offline replay never reaches it."""

    async def stream(self, request: LLMRequest) -> Any:
        raise AssertionError("the model was called")
        yield  # pragma: no cover


async def exported_run(make_runtime: Any, tmp_path: Path, session: str,
                       steps: int) -> tuple[Any, Path]:
    """A finished stepper run of ``steps`` steps, exported to ``<tmp_path>/<session>.helix``."""
    source = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await source.backend.start("stepper", f"steps={steps}", session_id=session)
    await h.result()
    path = tmp_path / f"{session}.helix"
    await export_session(h, path)
    return h, path


async def everything(handle: Any) -> dict[str, Any]:
    """What a session reads back as, through the client API."""
    status = await handle.status()
    return {"status": {k: v for k, v in status.items() if k != "isExecuting"},
            "checkpoints": await handle.checkpoints(),
            "messages": await handle.messages(),
            "state": await handle.get_state(),
            "history": (await handle.history(0, 10_000))["chunks"],
            "usage": (await handle.usage())["entries"]}


def storage_files(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.glob("*")) if p.is_file()}


async def test_round_trip_on_the_local_backend(make_runtime, tmp_path: Path) -> None:
    source = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await forked(source.backend, "trip", 3)
    path = tmp_path / "out" / "trip.helix"

    manifest = await export_session(h, path)

    assert manifest["sessionId"] == "trip" and manifest["agentType"] == "stepper"
    assert manifest["status"] == "completed"
    assert manifest["helixLab"] == helix_lab.__version__
    assert manifest["format"] == "helix-session" and manifest["formatVersion"] == 1
    assert manifest["agent"]["tools"] == e2e_scenario.stepper.tool_specs()
    assert manifest["agent"]["system"] == "Work through the steps."
    assert manifest["tables"]["helix_chunks"]["rows"] == (await h.status())["lastSequence"]
    assert manifest["tables"]["helix_checkpoints"]["rows"] == len(await h.checkpoints())
    assert "helix_search" not in manifest["tables"]  # derived: rebuilt from the chunks
    assert [p.name for p in path.parent.iterdir()] == ["trip.helix"]  # no temp file left

    target = make_runtime(e2e_scenario.registry, NoNetwork())
    file = await import_session(path, target.ns)

    assert file.session_id == "trip"
    assert await everything(target.backend.handle("trip")) == await everything(h)
    # The search index is not in the file: the imported session builds its own.
    assert await target.backend.handle("trip").search("did 2") == await h.search("did 2")
    assert len(await h.search("did 2")) == 2  # both branches ran step 2


async def test_round_trip_from_helix_serve(served: Served, make_runtime, tmp_path: Path) -> None:
    path = tmp_path / "remote.helix"
    async with RemoteBackend(served.url, token=TOKEN) as remote:
        h = await forked(remote, "served-trip", 3)
        await export_session(h, path)
        original = await everything(h)
        with pytest.raises(NotFoundError, match="POST /start first"):
            await export_session(remote.handle("never-started"), tmp_path / "none.helix")
    assert not (tmp_path / "none.helix").exists()

    target = make_runtime(e2e_scenario.registry, NoNetwork())
    await import_session(path, target.ns)
    assert await everything(target.backend.handle("served-trip")) == original


async def test_replay_from_session_forks_offline(make_runtime, tmp_path: Path) -> None:
    source = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await forked(source.backend, "replayed", 3)
    path = tmp_path / "replayed.helix"
    await export_session(h, path)

    replay = ReplayLLM.from_session(path)
    target = make_runtime(e2e_scenario.registry, replay)
    await import_session(path, target.ns)
    imported = target.backend.handle("replayed", "stepper")
    checkpoints = await imported.checkpoints()

    # A fork from every step of both branches runs offline to the recorded answer (the
    # final checkpoints have nothing after them to replay).
    forkable = [c for c in checkpoints if c["status"] != "completed"]
    assert len(forkable) == len(checkpoints) - 2
    for checkpoint in forkable:
        fork = await imported.resume("from_checkpoint", checkpoint_id=checkpoint["checkpointId"])
        assert await fork.result() == "finished 3 steps"
    assert len(replay.requests) == sum(4 - c["step"] for c in forkable)
    # The replayed turns carry the recorded usage: a replay costs what the recording did.
    recorded = {(e["step"], e["inputTokens"], e["outputTokens"])
                for e in (await h.usage())["entries"]}
    replayed = (await imported.usage())["entries"][len(recorded):]
    assert {(e["step"], e["inputTokens"], e["outputTokens"]) for e in replayed} == recorded

    # Asked something the recording never saw: a clear mismatch naming the message.
    fork = await imported.resume("from_checkpoint", checkpoint_id=checkpoints[1]["checkpointId"],
                                 message="and now steps=5")
    status = await target.wait("replayed")
    assert status["status"] == "failed"
    assert ("the request differs from the recording at messages[3].role: recorded "
            "'assistant', got 'user'") in status["error"]
    assert fork.session_id == "replayed"


async def test_a_mismatch_names_the_field(make_runtime, tmp_path: Path) -> None:
    h, path = await exported_run(make_runtime, tmp_path, "m", steps=2)
    replay = ReplayLLM.from_session(path)
    messages = await h.messages()
    tools = e2e_scenario.stepper.tool_specs()

    def request(msgs: list[dict[str, Any]], **extra: Any) -> LLMRequest:
        return LLMRequest(model=extra.pop("model", e2e_scenario.stepper.llm_config.model),
                          system="Work through the steps.", messages=msgs, tools=tools,
                          **extra)

    async def first_error(req: LLMRequest) -> CassetteMismatch:
        with pytest.raises(CassetteMismatch) as caught:
            async for _ in replay.stream(req):
                pass
        return caught.value

    events = [e async for e in replay.stream(request(messages[:3]))]
    assert events[0] == {"type": "thinking_delta", "delta": "Step 2 of 2."}
    assert events[1]["type"] == "tool_call" and events[1]["input"] == {"n": 2}
    assert events[-1] == {"type": "finish", "stop_reason": "tool_use"}

    changed = json.loads(json.dumps(messages[:3]))
    changed[2]["content"][0]["content"] = "did 7"
    found = await first_error(request(changed))
    assert (found.field, found.recorded, found.got) == ("messages[2].content[0].content",
                                                        "did 1", "did 7")
    found = await first_error(request(messages[:3], model="claude-other"))
    assert found.field == "model" and found.got == "claude-other"
    ended = await first_error(request(messages))
    assert ended.field == "messages[6]" and len(messages) == 6
    assert "the recording made no model call after these 6 messages (it ended there)" in str(
        ended)
    replay.ignore = frozenset({"model"})
    assert [e async for e in replay.stream(request(messages[:3], model="x"))] == events


async def test_export_import_replay_in_a_fresh_process(make_runtime, tmp_path: Path) -> None:
    source = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await forked(source.backend, "fresh", 3)
    path = tmp_path / "fresh.helix"
    await export_session(h, path)
    script = """
import asyncio, json, sys
from helix_lab import LocalBackend, LocalNamespace, create_agent_server
from helix_lab.llm import ReplayLLM
from helix_lab.session_file import import_session
import e2e_scenario

async def main():
    path, storage = sys.argv[1], sys.argv[2]
    replay = ReplayLLM.from_session(path)
    server = create_agent_server(llm_adapter=lambda env, ctx: replay,
                                 agents=e2e_scenario.registry)
    ns = LocalNamespace(server, storage=storage)
    await import_session(path, ns)
    async with LocalBackend(ns) as backend:
        h = backend.handle("fresh", "stepper")
        cps = await h.checkpoints()
        fork = await h.resume("from_checkpoint", checkpoint_id=cps[1]["checkpointId"],
                              modify_state={"label": "offline"})
        out = await fork.result()
        print(json.dumps({"output": out, "state": await fork.get_state(),
                          "replayed": len(replay.requests), "checkpoints": len(cps)}))
    await ns.aclose()

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT)])
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # no network to reach
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script, str(path), str(tmp_path / "other")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"output": "finished 3 steps", "state": {"done": [1, 2, 3],
                                                             "label": "offline"},
                      "replayed": 3, "checkpoints": len(await h.checkpoints())}


# -- bad files ------------------------------------------------------------------------------


@pytest.fixture
async def exported(make_runtime, tmp_path: Path) -> Path:
    return (await exported_run(make_runtime, tmp_path, "good", steps=1))[1]


def rewrite(source: Path, target: Path, change: Any) -> Path:
    """A copy of a .helix file with ``change(name, data) -> data | None`` applied."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = change(name, old.read(name))
            if data is not None:
                new.writestr(name, data)
    return target


def manifest_edit(**fields: Any) -> Any:
    def change(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        for key, value in fields.items():
            manifest[key] = value(manifest[key]) if callable(value) else value
        return json.dumps(manifest).encode()
    return change


def bad_files(good: Path, folder: Path) -> list[tuple[Path, str]]:
    text = folder / "notes.helix"
    text.write_text("just some text\n")
    cut = folder / "cut.helix"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return [
        (text, "it is not a zip archive"),
        (cut, "it is not a zip archive"),
        (rewrite(good, folder / "nomanifest.helix",
                 lambda n, d: None if n == "manifest.json" else d),
         "it has no manifest.json; it was not written by %helix export"),
        (rewrite(good, folder / "foreign.helix", manifest_edit(format="something-else")),
         "does not describe a helix session (format 'something-else'"),
        (rewrite(good, folder / "future.helix", manifest_edit(formatVersion=99)),
         "it has format version 99; this helix_lab reads version 1. Upgrade helix_lab"),
        (rewrite(good, folder / "tampered.helix",
                 lambda n, d: d.replace(b"did 1", b"did 9") if "chunks" in n else d),
         "tables/helix_chunks.jsonl does not match its checksum"),
        (rewrite(good, folder / "injected.helix",
                 manifest_edit(tables=lambda t: {**t, "helix_x; DROP TABLE y": {"rows": 0}})),
         "which is not one of helix_lab's"),
        (rewrite(good, folder / "missing.helix",
                 lambda n, d: None if "messages" in n else d),
         "tables/helix_messages.jsonl is missing"),
    ]


async def test_damaged_and_foreign_files_are_refused_and_touch_nothing(
        make_runtime, exported: Path, tmp_path: Path) -> None:
    target = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await target.backend.start("stepper", "steps=1", session_id="already-here")
    await h.result()
    before_files = storage_files(Path(target.storage))
    before = await everything(h)
    folder = tmp_path / "bad"
    folder.mkdir()

    for path, message in bad_files(exported, folder):
        with pytest.raises(SessionFileError) as caught:
            await import_session(path, target.ns)
        assert message in str(caught.value), (path.name, str(caught.value))
        assert str(caught.value).startswith(f"{path} is not a usable .helix file: ") or (
            "No file" in str(caught.value))
        with pytest.raises(SessionFileError):
            ReplayLLM.from_session(path)

    with pytest.raises(SessionFileError, match="No file at"):
        await import_session(folder / "absent.helix", target.ns)
    assert storage_files(Path(target.storage)) == before_files
    assert await everything(h) == before


async def test_importing_a_session_that_is_already_stored_changes_nothing(
        make_runtime, exported: Path) -> None:
    target = make_runtime(e2e_scenario.registry, NoNetwork())
    await import_session(exported, target.ns)
    before = await everything(target.backend.handle("good"))
    files = storage_files(Path(target.storage))

    with pytest.raises(UserError, match="Session 'good' is already stored here"):
        await import_session(exported, target.ns)

    assert storage_files(Path(target.storage)) == files
    assert await everything(target.backend.handle("good")) == before
    assert SessionFile(exported).tables["helix_chunks"]["rows"] == len(before["history"])


async def test_export_names_the_file_helix(make_runtime, tmp_path: Path) -> None:
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    with pytest.raises(UserError, match=r"Name the export file \*.helix"):
        await export_session(runtime.backend.handle("x"), tmp_path / "x.zip")


async def test_export_and_import_magics(kernel: Kernel, exported: Path,  # noqa: F811
                                        tmp_path: Path) -> None:
    await kernel.ok("%%helix_agent researcher --session k1 --wait\nWhat do otters eat?")

    ran = await kernel.ok(f"%helix export k1 {tmp_path / 'k1.helix'}")
    assert ran.out.startswith("exported session k1 (researcher, completed; ")
    assert SessionFile(tmp_path / "k1.helix").agent_type == "researcher"
    message = await kernel.usage_error(f"%helix import {tmp_path / 'k1.helix'}")
    assert message.startswith("Session 'k1' is already stored here")

    kernel.shown.clear()
    ran = await kernel.ok(f"%helix import {exported}")
    assert ran.out.splitlines()[0] == (
        f"imported session good (stepper, completed; exported by helix_lab "
        f"{helix_lab.__version__}) into the local backend (.helix/)")
    assert "note: no agent 'stepper' is defined here" in ran.out
    views = kernel.views()
    assert len(views) == 1 and views[0].handle.session_id == "good"
    ran = await kernel.ok("%helix checkpoints good")
    assert len(ran.out.splitlines()) == 2 + SessionFile(exported).tables[
        "helix_checkpoints"]["rows"]

    message = await kernel.usage_error(f"%helix import {tmp_path / 'nothing.helix'}")
    assert message.startswith("No file at")
    message = await kernel.usage_error("%helix export")
    assert message.startswith("Usage: %helix export [SESSION] PATH")


async def test_sub_agent_sessions_travel_with_their_parent(make_runtime, tmp_path: Path) -> None:
    from helix_lab import Agent, AgentRegistry, tool
    from helix_lab.llm.scripted import ScriptedLLM, Turn, call

    @tool
    def lookup(topic: str) -> str:
        """Look a topic up."""
        return f"facts about {topic}"

    helper = Agent(name="helper", tools=[lookup], system_prompt="Look things up.",
                   register=False)
    boss = Agent(name="boss", agents=[helper], system_prompt="Delegate.", register=False)
    registry = AgentRegistry()
    registry.register(boss)

    def models() -> dict[str, Any]:
        return {"boss": ScriptedLLM([Turn(tool_calls=[call("subagent__helper",
                                                          message="otters?")]),
                                     "The helper found facts about otters."]),
                "helper": ScriptedLLM([Turn(tool_calls=[call("lookup", topic="otters")]),
                                       "facts about otters"])}

    source = make_runtime(registry, models())
    h = await source.backend.start("boss", "Ask the helper.", session_id="boss")
    assert await h.result() == "The helper found facts about otters."
    [child_id] = [c["childSessionId"] for c in (await h.history(0, 1000))["chunks"]
                  if c["type"] == "subagent_start"]
    path = tmp_path / "boss.helix"

    manifest = await export_session(h, path)

    [child] = manifest["children"]
    assert child["sessionId"] == child_id and child["agentType"] == "helper"
    assert child["agent"]["system"] == "Look things up."
    assert [p for p, _ in SessionFile(path).sessions] == ["", f"children/{child_id}/"]

    replay = ReplayLLM.from_session(path)
    target = make_runtime(registry, lambda env, ctx: replay)
    await import_session(path, target.ns)
    original_child = source.backend.handle(child_id)
    imported_child = target.backend.handle(child_id)
    assert await everything(imported_child) == await everything(original_child)

    # A fork of the parent from its start runs offline, the sub-agent's calls included.
    imported = target.backend.handle("boss", "boss")
    root = (await imported.checkpoints())[0]["checkpointId"]
    fork = await imported.resume("from_checkpoint", checkpoint_id=root)
    assert await fork.result() == "The helper found facts about otters."
    assert len(replay.requests) == 4  # two turns of the boss, two of the helper
    assert {r.system for r in replay.requests} == {"Delegate.", "Look things up."}

    # A session with a sub-agent is refused whole when the sub-agent's id is taken.
    other = make_runtime(registry, models())
    h2 = await other.backend.start("boss", "Ask the helper.", session_id=child_id)
    await h2.result()
    with pytest.raises(UserError, match=f"Session '{child_id}' is already stored here"):
        await import_session(path, other.ns)
    assert not other.ns.exists(other.ns.id_from_name("session:boss"))

    # A damaged sub-agent entry is caught like any other.
    tampered = rewrite(path, tmp_path / "tampered.helix", lambda name, data: data.replace(
        b"facts about otters", b"facts about seals") if name.startswith("children/") and
        "messages" in name else data)
    with pytest.raises(SessionFileError, match=f"children/{child_id}/tables/helix_messages"
                                               r"\.jsonl does not match its checksum"):
        SessionFile(tampered)
