"""Secrets: after runs with an API key set, the key is nowhere but in the API request.

A fresh random key is put in ``ANTHROPIC_API_KEY`` (and in the server's ``env``) and the real
adapters talk to ``FakeAnthropic``, whose error bodies echo the key back, as a badly behaved
proxy might. The runs cover a tool call, a 529 and a retried error event, a 401, a failing
sub-agent (403), and a ``RecordingLLM`` cassette; the notebook path (``Workbench`` with
``%helix llm anthropic``, the view's rendered HTML) and ``helix serve`` (the Worker's own
fetch adapter) are run too. With every logger at DEBUG, the key must not appear in:

- any byte of any file under the storage directories (sqlite, WAL and all);
- any chunk of any session (``/history``), nor ``/status``, ``/snapshot``, ``/messages``,
  ``/usage``, ``/checkpoints`` bodies;
- the cassette file, the captured logs, the output of ``helix serve``;
- ``repr()`` of the adapters, the backends, the namespace, the workbench's model choice;
- the HTML the agent view renders for the session (what a notebook output holds).

It must appear in the requests the fake API received (its ``x-api-key`` or bearer
``authorization`` header), which shows that it really was set. The committed notebooks and cassettes must hold nothing that
looks like an Anthropic key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import anthropic_server as api
from fakes.anthropic_server import (
    FakeAnthropic,
    Text,
    Thinking,
    ToolUse,
    turn,
)
from helpers import of_type
from rel_helpers import history

from helix_lab.agent import Agent, LLMConfig
from helix_lab.client.backend import LocalBackend, RemoteBackend
from helix_lab.llm.anthropic import AnthropicAdapter
from helix_lab.llm.cassette import RecordingLLM
from helix_lab.runtime import AgentRegistry, LocalNamespace, RetryPolicy, create_agent_server
from helix_lab.tools import tool

ROOT = Path(__file__).resolve().parents[1]
KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_-]{16,}")


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"sk-ant-api03-{secrets.token_urlsafe(48)}-relAA"
    monkeypatch.setenv("ANTHROPIC_API_KEY", value)
    return value


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger: helix_lab, anthropic, httpx, httpcore
    for name in ("helix_lab", "anthropic", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def assert_absent(key: str, where: str, blob: str | bytes) -> None:
    needle = key.encode() if isinstance(blob, bytes) else key
    assert needle not in blob, f"the API key appears in {where}"


def assert_key_was_sent(fake: FakeAnthropic, key: str) -> None:
    assert fake.requests, "no request reached the fake API"
    sent = [r.headers.get("x-api-key") or r.headers.get("authorization", "").removeprefix(
        "Bearer ") for r in fake.requests]
    assert all(value == key for value in sent), (
        f"the key was not the one sent ({[v and v[:12] for v in sent]}): the test would "
        "prove nothing")


async def dump_session(backend: Any, sid: str) -> str:
    """Everything the endpoints of a session show, as one string."""
    handle = backend.handle(sid)
    parts: list[Any] = [await history(handle), await handle.status(), await handle.snapshot(),
                        await handle.usage(), await handle.checkpoints()]
    try:
        parts.append(await handle.messages())
    except Exception as exc:  # a session with no checkpoint has no messages
        parts.append(repr(exc))
    return json.dumps(parts)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """The captured log, with every record's message, arguments and traceback."""
    out = [caplog.text]
    for record in caplog.records:
        out.append(record.getMessage())
        out.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            out.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(out)


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"notes on {q}"


MODEL = LLMConfig(model="claude-test")
helper = Agent(name="helper", llm_config=MODEL, register=False)
keeper = Agent(name="keeper", tools=[lookup], agents=[helper], llm_config=MODEL, register=False)


async def test_the_key_stays_out_of_storage_chunks_cassettes_logs_and_reprs(
        key: str, fake: FakeAnthropic, logs: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    fake.push(
        # run 1: a tool step, then a 529 and an error event echoing the key, then the answer
        turn(Thinking("Look it up first."), ToolUse("lookup", {"q": "otters"})),
        api.overloaded(),
        api.error_mid_stream(Text("partial"), after=4, message=f"overloaded (key {key})"),
        turn(Text("Otters hold hands.")),
        # run 2 (a follow-up): the key is refused, and the error body repeats it
        api.http_error(401, "authentication_error", f"invalid x-api-key: {key}"),
        # run 3 (a retry): a sub-agent whose call is refused with the key in the message
        turn(ToolUse("subagent__helper", {"message": "help"})),
        api.http_error(403, "permission_error", f"key {key} may not use this model"),
        turn(Text("Done without help.")),
    )
    storage = tmp_path / "storage"
    cassette = tmp_path / "cassettes" / "run.jsonl"
    adapter = AnthropicAdapter("claude-test", base_url=fake.base_url)  # key from the env
    recording = RecordingLLM(adapter, cassette)
    registry = AgentRegistry()
    registry.register(keeper)
    server = create_agent_server(llm_adapter=lambda env, ctx: recording, agents=registry,
                                 retry=RetryPolicy(base_delay=0.01, max_delay=0.02,
                                                   max_attempts=3))
    namespace = LocalNamespace(server, env={"ANTHROPIC_API_KEY": key}, storage=str(storage))
    backend = LocalBackend(namespace)
    try:
        handle = await backend.start("keeper", "Tell me about otters", session_id="k1")
        assert await asyncio.wait_for(handle.result(), 60) == "Otters hold hands."
        second = await handle.send("And more?")
        chunks = [c async for c in second.stream()]
        assert "401" in of_type(chunks, "run_failed")[-1]["error"]
        third = await handle.retry()
        assert await asyncio.wait_for(third.result(), 60) == "Done without help."

        everything = await history(handle)
        assert len(of_type(everything, "llm_retry")) == 2
        assert of_type(everything, "subagent_end")[0]["status"] == "failed"
        assert_key_was_sent(fake, key)

        dumps = [await dump_session(backend, "k1")]
        for object_id in namespace.stored_ids():  # the sub-agent's session too
            sid = namespace.instance(object_id).session_id
            if sid:
                dumps.append(await dump_session(backend, sid))
        assert len(dumps) == 3
        for text in dumps:
            assert_absent(key, "a session's endpoints", text)
        # The redaction is visible where the server echoed the key.
        assert "***" in json.dumps(dumps)

        reprs = [repr(adapter), repr(recording), repr(backend), repr(namespace),
                 repr(namespace.instance(namespace.id_from_name("session:k1")).execution)]
        assert_absent(key, "a repr", "\n".join(reprs))
    finally:
        await backend.aclose()
        await namespace.aclose()
        await adapter.aclose()

    assert cassette.exists() and recording.calls == len(fake.requests)
    assert_absent(key, "the cassette", cassette.read_bytes())
    for path in files_under(storage):
        assert_absent(key, f"stored file {path.name}", path.read_bytes())
    assert_absent(key, "the logs", log_text(logs))


async def test_the_notebook_path_and_its_rendered_view_never_show_the_key(
        key: str, fake: FakeAnthropic, logs: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    from helix_lab.examples import researcher
    from helix_lab.widgets.render import render_header, render_stream, render_timeline
    from helix_lab.widgets.view_state import ViewState
    from helix_lab.workbench import Workbench

    fake.push(turn(Thinking("Search the notes."), ToolUse("search_notes", {"query": "otters"})),
              api.http_error(401, "authentication_error", f"bad key {key}"))
    bench = Workbench(storage=tmp_path / "helix")
    registry = AgentRegistry()
    registry.register(researcher)
    bench.registry = registry
    choice = bench.use_llm("anthropic", fake.base_url)  # what %helix llm anthropic URL does
    backend = bench.local
    try:
        handle = await backend.start("researcher", "Tell me about otters", session_id="nb")
        chunks = [c async for c in handle.stream()]
        assert of_type(chunks, "run_failed")
        assert_key_was_sent(fake, key)
        view = ViewState("researcher", "nb")
        for chunk in chunks:
            view.apply(chunk)
        shown = "\n".join([render_stream(view), render_header(view, bench.describe_backend()),
                           render_timeline(view), view.summary(), choice.label,
                           repr(choice.adapter), bench.describe_backend()])
        assert "401" in shown  # the failure is shown to the user, without the key
        assert_absent(key, "the notebook's rendered view", shown)
        assert_absent(key, "the session's endpoints", await dump_session(backend, "nb"))
    finally:
        await backend.aclose()
        await backend.namespace.aclose()
        await choice.adapter.aclose()
    for path in files_under(tmp_path / "helix"):
        assert_absent(key, f"stored file {path.name}", path.read_bytes())
    assert_absent(key, "the logs", log_text(logs))


async def test_helix_serve_keeps_the_key_out_of_its_output_storage_and_answers(
        key: str, fake: FakeAnthropic, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    storage = tmp_path / "serve"
    fake.push(turn(ToolUse("search_notes", {"query": "otters"})),
              api.http_error(401, "authentication_error", f"invalid x-api-key {key}"))
    env = {**os.environ, "HELIX_TOKEN": token, "ANTHROPIC_API_KEY": key,
           "ANTHROPIC_BASE_URL": fake.base_url,
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "helix_lab.cli", "serve", "--port", "0", "--storage",
        str(storage), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, cwd=str(ROOT))
    assert proc.stdout is not None and proc.stderr is not None
    backend = None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        url = re.search(r"(http://127\.0\.0\.1:\d+)", first)
        assert url, first
        backend = RemoteBackend(url.group(1), token=token)
        handle = await backend.start("researcher", "Tell me about otters", session_id="sv")
        chunks = [c async for c in handle.stream()]
        failed = of_type(chunks, "run_failed")
        assert failed and "401" in failed[-1]["error"], chunks[-3:]
        assert_key_was_sent(fake, key)
        assert_absent(key, "helix serve's answers", await dump_session(backend, "sv"))
        assert_absent(key, "the remote backend's repr", repr(backend))
    finally:
        if backend is not None:
            await backend.aclose()
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 60)
    output = (await proc.stdout.read()) + (await proc.stderr.read())
    assert_absent(key, "helix serve's output", first.encode() + output)
    for path in files_under(storage):
        assert_absent(key, f"stored file {path.name}", path.read_bytes())


def test_committed_notebooks_and_cassettes_hold_nothing_like_a_key() -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks to check"
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        outputs = json.dumps([c.get("outputs", []) for c in cells])
        assert not KEY_PATTERN.search(outputs), f"{path.name}: an output looks like a key"
        assert not KEY_PATTERN.search(path.read_text()), f"{path.name} holds a key"
    cassettes = files_under(ROOT / "notebooks" / "cassettes", ROOT / "tests" / "cassettes")
    for path in cassettes:
        text = path.read_text(errors="replace")
        assert not KEY_PATTERN.search(text), f"{path}: holds something like a key"
        assert "x-api-key" not in text.lower(), f"{path}: holds request headers"
