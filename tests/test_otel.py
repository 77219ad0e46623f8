"""OpenTelemetry GenAI export: runs become ``invoke_agent`` / ``chat`` / ``execute_tool`` spans.

Spans are checked with the SDK's in-memory exporter (after the fact from the history, and
live from the stream, on a LocalBackend and on ``helix serve``), and end to end through the
OTLP/HTTP exporter into a small collector on 127.0.0.1 that decodes the protobuf requests:
turned on by ``%helix otel URL`` and by the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import e2e_scenario
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, StatusCode
from served import TOKEN
from test_magics import Kernel, close_workbench, kernel, shell, shown  # noqa: F401

from helix_lab import Agent, RemoteBackend, ToolError, tool
from helix_lab.llm.scripted import ScriptedLLM, Turn, call
from helix_lab.otel import RunTracer, otlp_endpoint

MODEL = "claude-sonnet-5-5"


@pytest.fixture
def memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    if topic == "fail":
        raise ToolError("no such topic")
    return f"facts about {topic}"


def agent() -> Agent:
    return Agent(name="looker", tools=[lookup], register=False)


def script() -> ScriptedLLM:
    return ScriptedLLM([Turn(text="Looking.", tool_calls=[call("lookup", topic="otters"),
                                                          call("lookup", topic="fail")]),
                        "Otters use stones."])


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


VARYING = (g.GEN_AI_CONVERSATION_ID, g.GEN_AI_TOOL_CALL_ID, "helix.run_id",
           g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)


def summary(spans: Any) -> list[tuple[str, str, tuple[tuple[str, Any], ...]]]:
    """Names, parents and attributes, without the ids and times that differ run to run."""
    names = {s.context.span_id: s.name for s in spans}
    return sorted((s.name, names.get(s.parent.span_id, "?") if s.parent else "",
                   tuple(sorted((k, v) for k, v in s.attributes.items() if k not in VARYING)))
                  for s in spans)


async def test_a_stored_run_becomes_agent_chat_and_tool_spans(make_runtime, memory) -> None:
    provider, exporter = memory
    runtime = make_runtime([agent()], script())
    handle = await runtime.backend.start("looker", "otters?", session_id="o1")
    assert await handle.result() == "Otters use stones."
    chunks = await runtime.chunks("o1")

    await RunTracer(provider).export_session(handle, page=7)  # several pages of history

    spans = exporter.get_finished_spans()
    named = by_name(spans)
    assert sorted(named) == [f"chat {MODEL}", "execute_tool lookup", "invoke_agent looker"]
    [root] = named["invoke_agent looker"]
    chats, tools = named[f"chat {MODEL}"], named["execute_tool lookup"]
    assert len(chats) == 2 and len(tools) == 2
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    assert root.attributes[g.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert root.attributes[g.GEN_AI_AGENT_NAME] == "looker"
    assert root.attributes[g.GEN_AI_CONVERSATION_ID] == "o1"
    assert root.attributes[g.GEN_AI_REQUEST_MODEL] == MODEL
    assert root.status.status_code == StatusCode.UNSET
    for child in [*chats, *tools]:
        assert child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    for chat in chats:
        assert chat.kind == SpanKind.CLIENT
        assert chat.attributes[g.GEN_AI_OPERATION_NAME] == "chat"
        assert chat.attributes[g.GEN_AI_PROVIDER_NAME] == "anthropic"
        assert chat.attributes[g.GEN_AI_REQUEST_MODEL] == MODEL
        assert chat.attributes[g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0

    # Tokens: the same as the usage store, per call and in total.
    usage = (await handle.usage())["entries"]
    assert [c.attributes[g.GEN_AI_USAGE_INPUT_TOKENS] for c in chats] == [
        e["inputTokens"] for e in usage]
    assert [c.attributes[g.GEN_AI_USAGE_OUTPUT_TOKENS] for c in chats] == [
        e["outputTokens"] for e in usage]
    assert root.attributes[g.GEN_AI_USAGE_INPUT_TOKENS] == sum(e["inputTokens"] for e in usage)

    # Tool calls: ids from the chunks; the failed one is an error span.
    starts = [c for c in chunks if c["type"] == "tool_start"]
    ends = {c["toolCallId"]: c for c in chunks if c["type"] == "tool_end"}
    assert [t.attributes[g.GEN_AI_TOOL_CALL_ID] for t in tools] == [
        c["toolCallId"] for c in starts]
    ok, failed = tools
    assert ok.attributes[g.GEN_AI_TOOL_NAME] == "lookup"
    assert ok.attributes[g.GEN_AI_TOOL_TYPE] == "function"
    assert ok.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes[ERROR_TYPE] == "tool_error"
    assert "no such topic" in failed.status.description

    # Times are the chunks' own: a trace of an old run keeps its timing.
    assert root.start_time == chunks[0]["timestamp"] * 1_000_000
    assert root.end_time == chunks[-1]["timestamp"] * 1_000_000
    assert ok.start_time == starts[0]["timestamp"] * 1_000_000
    assert ok.end_time == ends[starts[0]["toolCallId"]]["timestamp"] * 1_000_000
    assert chats[0].end_time <= ok.start_time <= ok.end_time <= chats[1].start_time

    # Content is sensitive: none of it without capture_content.
    assert not any(g.GEN_AI_TOOL_CALL_ARGUMENTS in s.attributes for s in spans)
    assert not any(g.GEN_AI_TOOL_CALL_RESULT in s.attributes for s in spans)


async def test_capture_content_records_arguments_results_and_output(make_runtime,
                                                                    memory) -> None:
    provider, exporter = memory
    runtime = make_runtime([agent()], script())
    handle = await runtime.backend.start("looker", "otters?", session_id="o2")
    await handle.result()

    await RunTracer(provider, capture_content=True).export_session(handle)

    named = by_name(exporter.get_finished_spans())
    ok = named["execute_tool lookup"][0]
    assert ok.attributes[g.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"topic": "otters"}'
    assert ok.attributes[g.GEN_AI_TOOL_CALL_RESULT] == "facts about otters"
    assert named["invoke_agent looker"][0].attributes[g.GEN_AI_OUTPUT_MESSAGES] == (
        "Otters use stones.")


async def test_a_failed_run_is_an_error_span_and_each_run_its_own_trace(make_runtime,
                                                                       memory) -> None:
    provider, exporter = memory
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    gate = e2e_scenario.Gate()  # the run waits before step 2: the abort finds it running
    h = await runtime.backend.start("stepper", f"steps=50 hold=2 gate={gate.path}",
                                    session_id="f1")
    await e2e_scenario.wait_for_step(h, 1)
    await h.abort("enough")
    gate.open()
    again = await h.retry("from_start", message="steps=1")
    assert await again.result() == "finished 1 steps"

    await RunTracer(provider).export_session(h)

    roots = by_name(exporter.get_finished_spans())["invoke_agent stepper"]
    assert len(roots) == 2
    aborted = roots[0]
    assert aborted.status.status_code == StatusCode.ERROR
    assert aborted.attributes[ERROR_TYPE] == "aborted"
    assert roots[1].attributes["helix.resume_mode"] == "retry_from_start"
    assert roots[0].context.trace_id != roots[1].context.trace_id


async def test_a_sub_agent_run_nests_under_its_tool_call(make_runtime, memory) -> None:
    provider, exporter = memory
    helper = Agent(name="helper", tools=[lookup], register=False)
    boss = Agent(name="boss", agents=[helper], register=False)
    runtime = make_runtime([boss], {
        "boss": ScriptedLLM([Turn(tool_calls=[call("subagent__helper", message="otters?")]),
                             "The helper says: facts about otters."]),
        "helper": ScriptedLLM([Turn(tool_calls=[call("lookup", topic="otters")]),
                               "facts about otters"])})

    async def check() -> None:
        spans = exporter.get_finished_spans()
        named = by_name(spans)
        [root] = named["invoke_agent boss"]
        [delegate] = named["execute_tool subagent__helper"]
        [child] = named["invoke_agent helper"]
        [lookup_span] = named["execute_tool lookup"]
        assert delegate.parent.span_id == root.context.span_id
        assert child.parent.span_id == delegate.context.span_id
        assert lookup_span.parent.span_id == child.context.span_id
        assert {s.context.trace_id for s in spans} == {root.context.trace_id}
        assert child.attributes[g.GEN_AI_CONVERSATION_ID] != root.attributes[
            g.GEN_AI_CONVERSATION_ID]
        assert delegate.start_time <= child.start_time <= child.end_time <= delegate.end_time
        chats = named[f"chat {MODEL}"]
        assert sorted(c.parent.span_id for c in chats) == sorted(
            [root.context.span_id] * 2 + [child.context.span_id] * 2)
        assert len(spans) == 8  # two agents, two model calls each, two tool calls
        exporter.clear()

    live = await runtime.backend.start("boss", "Ask the helper.", session_id="boss-live")
    await asyncio.wait_for(RunTracer(provider).trace(live), 60)
    assert await live.result() == "The helper says: facts about otters."
    await check()

    await RunTracer(provider).export_session(live)  # after the fact, from the histories
    await check()


async def traced_live(backend: Any, provider: TracerProvider, session: str) -> None:
    """Trace a stepper run from its stream while it runs."""
    handle = await backend.start("stepper", "steps=3", session_id=session)
    tracer = RunTracer(provider)
    await asyncio.wait_for(tracer.trace(handle), 60)
    assert await handle.result() == "finished 3 steps"


async def test_live_tracing_matches_the_history_on_both_backends(make_runtime, memory,
                                                                 served) -> None:
    provider, exporter = memory
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    await traced_live(runtime.backend, provider, "live-local")
    live_local = exporter.get_finished_spans()
    exporter.clear()
    await RunTracer(provider).export_session(runtime.backend.handle("live-local"))
    assert summary(exporter.get_finished_spans()) == summary(live_local)
    exporter.clear()

    async with RemoteBackend(served.url, token=TOKEN) as remote:
        await traced_live(remote, provider, "live-remote")
        live_remote = exporter.get_finished_spans()
        exporter.clear()
        await RunTracer(provider).export_session(remote.handle("live-remote"))
        assert summary(exporter.get_finished_spans()) == summary(live_remote)

    assert summary(live_remote) == summary(live_local)
    named = by_name(live_remote)
    assert len(named["execute_tool work"]) == 3 and len(named[f"chat {MODEL}"]) == 4


# -- OTLP over HTTP, into a collector on 127.0.0.1 ------------------------------------------


class Collector:
    """An OTLP/HTTP traces receiver: decodes each protobuf request into its spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.arrived = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                collector.paths.append(self.path)
                for resource in request.resource_spans:
                    service = {a.key: a.value.string_value
                               for a in resource.resource.attributes}["service.name"]
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            collector.spans.append({
                                "service": service, "scope": scope.scope.name,
                                "name": span.name, "parent": span.parent_span_id.hex(),
                                "id": span.span_id.hex(),
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                            })
                collector.arrived.set()
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.close()


def check_collected(collector: Collector, session: str) -> None:
    spans = [s for s in collector.spans
             if s["attributes"].get(g.GEN_AI_CONVERSATION_ID) == session
             or s["name"] != "invoke_agent researcher"]
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    [root] = [s for s in spans if s["name"] == "invoke_agent researcher"]
    assert root["service"] == "helix_lab" and root["scope"] == "helix_lab"
    assert root["attributes"][g.GEN_AI_OPERATION_NAME] == "invoke_agent"
    children = [s for s in spans if s["parent"] == root["id"]]
    kinds = sorted({s["attributes"][g.GEN_AI_OPERATION_NAME] for s in children})
    assert kinds == ["chat", "execute_tool"]
    tools = [s for s in children if s["attributes"][g.GEN_AI_OPERATION_NAME] == "execute_tool"]
    assert all(s["name"] == f"execute_tool {s['attributes'][g.GEN_AI_TOOL_NAME]}" for s in tools)
    assert all(s["attributes"][g.GEN_AI_USAGE_OUTPUT_TOKENS] > 0 for s in children
               if s["attributes"][g.GEN_AI_OPERATION_NAME] == "chat")


async def test_helix_otel_sends_spans_over_otlp_http(kernel: Kernel,  # noqa: F811
                                                     collector: Collector) -> None:
    ran = await kernel.ok(f"%helix otel {collector.url}")
    assert ran.out.strip() == ("otel: runs started from now on are exported as GenAI spans, "
                               f"OTLP/HTTP to {collector.url}/v1/traces")
    assert (await kernel.ok("%helix otel status")).out.strip() == (
        f"otel: on, OTLP/HTTP to {collector.url}/v1/traces")
    await kernel.ok("%%helix_agent researcher --session traced --wait\nWhat do otters eat?")

    assert (await kernel.ok("%helix otel off")).out.strip() == "otel: off"  # flushes

    check_collected(collector, "traced")
    message = await kernel.usage_error("%helix otel ftp://nowhere")
    assert message.startswith("The OTLP endpoint must be an http:// or https:// URL")


async def test_the_standard_variables_turn_it_on_at_load(shell, shown, capsys,  # noqa: F811
                                                         collector: Collector,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    k = Kernel(shell, capsys, shown)
    ran = await k.ok("%load_ext helix_lab")
    assert (f"otel: on (OTEL_EXPORTER_OTLP_* is set), OTLP/HTTP to {collector.url}/v1/traces"
            in ran.out)
    try:
        await k.ok("%%helix_agent researcher --session env --wait\nWhere do seals sleep?")
    finally:
        await close_workbench(k.magics)  # stops tracing, which flushes

    check_collected(collector, "env")


def test_endpoints_come_from_the_standard_variables(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert otlp_endpoint() == "http://localhost:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example/")
    assert otlp_endpoint() == "https://otel.example/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t.example/custom")
    assert otlp_endpoint() == "https://t.example/custom"
    assert otlp_endpoint("http://127.0.0.1:4318/v1/traces") == "http://127.0.0.1:4318/v1/traces"
