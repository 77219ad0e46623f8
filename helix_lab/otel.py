"""OpenTelemetry export of runs, as spans that follow the GenAI semantic conventions.

A run becomes an agent span (``invoke_agent {agent}``) with one child span per model call
(``chat {model}``) and one per tool call (``execute_tool {tool}``). The spans are built on
the client side, from the chunk stream (live) or the stored history (after the fact), so
they work on every backend and the runtime knows nothing of OpenTelemetry. Their times are
the chunks' own timestamps, so a session traced long after it ran keeps its real timing.

::

    %helix otel                          # OTLP over HTTP, endpoint from OTEL_EXPORTER_OTLP_*
    %helix otel http://127.0.0.1:4318    # or here
    %helix otel off

    from helix_lab.otel import RunTracer
    await RunTracer(provider).export_session(handle)   # a stored session, after the fact

Attribute names come from ``opentelemetry-semantic-conventions`` (``pip install
helix_lab[otel]``). Message contents, tool arguments and tool results are sensitive: they
are recorded only with ``capture_content=True``, as the conventions ask.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from .client.handle import AgentHandle

__all__ = ["LiveTracing", "RunTracer", "env_configured", "otlp_endpoint", "otlp_provider"]

_INSTALL = ("OpenTelemetry export needs the [otel] extra: pip install 'helix_lab[otel]' "
            "(opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http and "
            "opentelemetry-semantic-conventions).")
ENV_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def _semconv() -> Any:
    try:
        from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
    except ImportError:
        raise UserError(_INSTALL) from None
    return gen_ai_attributes


def env_configured() -> bool:
    """Whether the standard ``OTEL_EXPORTER_OTLP_*`` variables name an endpoint."""
    return any(os.environ.get(name) for name in ENV_VARIABLES)


def otlp_endpoint(endpoint: str | None = None) -> str:
    """Where OTLP/HTTP traces go: ``endpoint``, else the standard variables, else the
    collector's default port on this machine."""
    if endpoint is None:
        specific = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if specific:
            return specific
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    if not endpoint.startswith(("http://", "https://")):
        raise UserError(f"The OTLP endpoint must be an http:// or https:// URL, got "
                        f"{endpoint!r}.")
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def otlp_provider(endpoint: str | None = None) -> TracerProvider:
    """An SDK tracer provider that batches spans to an OTLP/HTTP collector.

    ``endpoint`` is the collector's base URL (``/v1/traces`` is added) or its full traces
    URL; without one it comes from the ``OTEL_EXPORTER_OTLP_*`` variables (headers, timeout
    and the rest of them the exporter reads itself). The service name comes from ``OTEL_SERVICE_NAME``, else ``helix_lab``.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise UserError(_INSTALL) from None
    endpoint = otlp_endpoint(endpoint)
    service = os.environ.get("OTEL_SERVICE_NAME") or "helix_lab"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def _ns(chunk: dict[str, Any]) -> int:
    return int(chunk.get("timestamp") or 0) * 1_000_000


def _provider_name(model: str) -> str | None:
    """The ``gen_ai.provider.name`` a model id implies, when it is unambiguous."""
    if model.startswith("claude"):
        return "anthropic"
    if model.startswith(("gpt-", "o1", "o3", "o4")):
        return "openai"
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _Run:
    """The open spans of one run of one session."""

    def __init__(self, agent: Span) -> None:
        self.agent = agent
        self.chat: Span | None = None
        self.chat_started = 0
        self.first_token = False
        self.tools: dict[str, Span] = {}
        self.model: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0


class RunTracer:
    """Turns chunks into GenAI spans. Feed it every chunk of a session, in order.

    One tracer can follow many sessions; runs are told apart by session and run id.
    """

    def __init__(self, provider: Any = None, *, capture_content: bool = False) -> None:
        from opentelemetry import trace

        from . import __version__

        self._semconv = _semconv()
        self.provider = provider
        self.tracer: Tracer = (provider.get_tracer("helix_lab", __version__) if provider
                               else trace.get_tracer("helix_lab", __version__))
        self.capture_content = capture_content
        self._runs: dict[str, _Run] = {}
        self._parents: dict[str, Span] = {}
        """A sub-agent's session -> the ``execute_tool`` span of the call that ran it."""
        self._children: list[tuple[str, str]] = []
        """Sub-agent sessions seen and not traced yet: (session id, agent type)."""
        self.spans_started = 0

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> None:
        """Fold one chunk into the spans: open, annotate or close them."""
        kind = chunk.get("type")
        session = str(chunk.get("agentId") or "")
        if kind in ("run_started", "run_resumed"):
            self._end_run(session, chunk, None)  # a run left open by a crash ends here
            self._runs[session] = _Run(self._start_agent(chunk, self._parents.get(session)))
            return
        run = self._runs.get(session)
        if run is None:
            return  # a stream picked up mid-run: its agent span was never opened here
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(run, chunk)

    async def trace(self, handle: AgentHandle, from_sequence: int = 0, *,
                    follow: bool = False) -> None:
        """Follow a session's stream and trace what it runs, until it stops (or for ever
        with ``follow``). Sub-agents are followed too, their runs under the tool call."""
        children: list[asyncio.Task[None]] = []
        try:
            async for chunk in handle.stream(from_sequence, follow=follow):
                self.feed(chunk)
                for session, agent_type in self._take_children():
                    children = [t for t in children if not t.done()]
                    children.append(asyncio.get_running_loop().create_task(
                        self.trace(type(handle)(handle.backend, session, None, agent_type))))
            await asyncio.gather(*children)
        finally:
            for task in children:
                task.cancel()
        self.flush()

    async def export_session(self, handle: AgentHandle, page: int = 1000) -> None:
        """Trace a stored session from its history, page by page, and the sessions of its
        sub-agents after it; then flush."""
        async for chunk in handle.history_chunks(page=page):
            self.feed(chunk)
        for session, agent_type in self._take_children():
            await self.export_session(type(handle)(handle.backend, session, None, agent_type),
                                      page)
        self.flush()

    def _take_children(self) -> list[tuple[str, str]]:
        children, self._children = self._children, []
        return children

    def flush(self) -> None:
        flush = getattr(self.provider, "force_flush", None)
        if flush is not None:
            flush()

    # -- spans -----------------------------------------------------------------------------

    def _start(self, name: str, chunk: dict[str, Any], kind: Any,
               parent: Span | None = None, attributes: dict[str, Any] | None = None) -> Span:
        from opentelemetry import trace

        context = trace.set_span_in_context(parent) if parent is not None else None
        self.spans_started += 1
        return self.tracer.start_span(name, context=context, kind=kind,
                                      attributes=attributes, start_time=_ns(chunk))

    def _start_agent(self, chunk: dict[str, Any], parent: Span | None = None) -> Span:
        from opentelemetry.trace import SpanKind

        g = self._semconv
        agent = str(chunk.get("agentType") or "agent")
        attributes = {
            g.GEN_AI_OPERATION_NAME: g.GenAiOperationNameValues.INVOKE_AGENT.value,
            g.GEN_AI_AGENT_NAME: agent,
            g.GEN_AI_CONVERSATION_ID: str(chunk.get("agentId") or ""),
            "helix.run_id": str(chunk.get("runId") or ""),
        }
        if chunk.get("type") == "run_resumed":
            attributes["helix.resume_mode"] = str(chunk.get("mode") or "")
        return self._start(f"{g.GenAiOperationNameValues.INVOKE_AGENT.value} {agent}", chunk,
                           SpanKind.INTERNAL, parent=parent, attributes=attributes)

    def _end_run(self, session: str, chunk: dict[str, Any], error: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        run = self._runs.pop(session, None)
        if run is None:
            return
        end = _ns(chunk)
        for span in [*run.tools.values(), *([run.chat] if run.chat else [])]:
            span.end(end_time=end)
        g = self._semconv
        if run.model:
            run.agent.set_attribute(g.GEN_AI_REQUEST_MODEL, run.model)
        run.agent.set_attribute(g.GEN_AI_USAGE_INPUT_TOKENS, run.input_tokens)
        run.agent.set_attribute(g.GEN_AI_USAGE_OUTPUT_TOKENS, run.output_tokens)
        if error is not None:
            from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

            run.agent.set_attribute(ERROR_TYPE, error)
            run.agent.set_status(Status(StatusCode.ERROR, _text(chunk.get("error") or error)))
        run.agent.end(end_time=end)

    # -- one handler per chunk type --------------------------------------------------------

    def _on_step_started(self, run: _Run, chunk: dict[str, Any]) -> None:
        from opentelemetry.trace import SpanKind

        g = self._semconv
        if run.chat is not None:  # the previous call never reported: close it here
            run.chat.end(end_time=_ns(chunk))
        operation = g.GenAiOperationNameValues.CHAT.value
        run.chat = self._start(operation, chunk, SpanKind.CLIENT, parent=run.agent,
                               attributes={g.GEN_AI_OPERATION_NAME: operation,
                                           "helix.step": int(chunk.get("step") or 0)})
        run.chat_started, run.first_token = _ns(chunk), False

    def _on_text_delta(self, run: _Run, chunk: dict[str, Any]) -> None:
        if run.chat is not None and not run.first_token:
            run.first_token = True
            seconds = (_ns(chunk) - run.chat_started) / 1e9
            run.chat.set_attribute(self._semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, seconds)

    _on_thinking = _on_text_delta

    def _on_llm_retry(self, run: _Run, chunk: dict[str, Any]) -> None:
        if run.chat is not None:
            run.chat.add_event("llm_retry", {"attempt": int(chunk.get("attempt") or 0),
                                             "error": _text(chunk.get("error") or "")},
                               timestamp=_ns(chunk))

    def _on_usage(self, run: _Run, chunk: dict[str, Any]) -> None:
        """A model call's usage ends its chat span: the executor emits it as the call ends."""
        g = self._semconv
        span = run.chat
        if span is None:
            return
        model = str(chunk.get("model") or "")
        inputs, outputs = int(chunk.get("inputTokens") or 0), int(chunk.get("outputTokens") or 0)
        run.model = model or run.model
        run.input_tokens += inputs
        run.output_tokens += outputs
        attributes: dict[str, Any] = {g.GEN_AI_USAGE_INPUT_TOKENS: inputs,
                                      g.GEN_AI_USAGE_OUTPUT_TOKENS: outputs}
        if model:
            span.update_name(f"{g.GenAiOperationNameValues.CHAT.value} {model}")
            attributes[g.GEN_AI_REQUEST_MODEL] = model
            provider = _provider_name(model)
            if provider:
                attributes[g.GEN_AI_PROVIDER_NAME] = provider
        for key, name in (("cacheReadTokens", g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
                          ("cacheWriteTokens", g.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)):
            if chunk.get(key):
                attributes[name] = int(chunk[key])
        span.set_attributes(attributes)
        span.end(end_time=_ns(chunk))
        run.chat = None

    def _on_tool_start(self, run: _Run, chunk: dict[str, Any]) -> None:
        from opentelemetry.trace import SpanKind

        g = self._semconv
        name = str(chunk.get("toolName") or "tool")
        operation = g.GenAiOperationNameValues.EXECUTE_TOOL.value
        attributes = {g.GEN_AI_OPERATION_NAME: operation, g.GEN_AI_TOOL_NAME: name,
                      g.GEN_AI_TOOL_CALL_ID: str(chunk.get("toolCallId") or ""),
                      g.GEN_AI_TOOL_TYPE: "function",
                      "helix.step": int(chunk.get("step") or 0)}
        if self.capture_content:
            attributes[g.GEN_AI_TOOL_CALL_ARGUMENTS] = _text(chunk.get("input"))
        run.tools[str(chunk.get("toolCallId"))] = self._start(
            f"{operation} {name}", chunk, SpanKind.INTERNAL, parent=run.agent,
            attributes=attributes)

    def _on_tool_end(self, run: _Run, chunk: dict[str, Any]) -> None:
        from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
        from opentelemetry.trace import Status, StatusCode

        span = run.tools.pop(str(chunk.get("toolCallId")), None)
        if span is None:
            return
        if chunk.get("error") is not None:
            span.set_attribute(ERROR_TYPE, "tool_error")
            span.set_status(Status(StatusCode.ERROR, _text(chunk["error"])))
        elif self.capture_content:
            span.set_attribute(self._semconv.GEN_AI_TOOL_CALL_RESULT, _text(chunk.get("output")))
        span.end(end_time=_ns(chunk))

    def _on_subagent_start(self, run: _Run, chunk: dict[str, Any]) -> None:
        """A sub-agent runs as a child session: its runs go under this tool call's span."""
        child = str(chunk.get("childSessionId") or "")
        if not child or child in self._parents:
            return
        self._parents[child] = run.tools.get(str(chunk.get("toolCallId")), run.agent)
        self._children.append((child, str(chunk.get("childAgentType") or "")))

    def _on_checkpoint(self, run: _Run, chunk: dict[str, Any]) -> None:
        run.agent.add_event("checkpoint", {"helix.checkpoint_id": str(chunk.get("checkpointId")),
                                           "helix.step": int(chunk.get("step") or 0)},
                            timestamp=_ns(chunk))

    def _on_run_completed(self, run: _Run, chunk: dict[str, Any]) -> None:
        if self.capture_content and chunk.get("output") is not None:
            run.agent.set_attribute(self._semconv.GEN_AI_OUTPUT_MESSAGES,
                                    _text(chunk.get("output")))
        self._end_run(str(chunk.get("agentId") or ""), chunk, None)

    def _on_run_failed(self, run: _Run, chunk: dict[str, Any]) -> None:
        self._end_run(str(chunk.get("agentId") or ""), chunk,
                      "aborted" if chunk.get("aborted") else "run_failed")

    def _on_run_interrupted(self, run: _Run, chunk: dict[str, Any]) -> None:
        run.agent.set_attribute("helix.interrupted", str(chunk.get("reason") or "interrupted"))
        self._end_run(str(chunk.get("agentId") or ""), chunk, None)


class LiveTracing:
    """Traces every run of the sessions it follows, as their chunks arrive.

    One follower task per session streams with ``follow=True``, so later runs of the
    session (a resume, a retry, a fork from the view's buttons) are traced too.
    """

    def __init__(self, tracer: RunTracer, label: str) -> None:
        self.tracer = tracer
        self.label = label
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def follow(self, handle: AgentHandle, from_sequence: int = 0) -> None:
        task = self._tasks.get(handle.session_id)
        if task is not None and not task.done():
            return
        self._tasks[handle.session_id] = asyncio.get_running_loop().create_task(
            self._follow(handle, from_sequence))

    async def _follow(self, handle: AgentHandle, from_sequence: int) -> None:
        try:
            await self.tracer.trace(handle, from_sequence, follow=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # tracing must never break the notebook
            logging.getLogger("helix_lab.otel").warning(
                "tracing session %s stopped: %s", handle.session_id, exc)

    @property
    def sessions(self) -> list[str]:
        return sorted(s for s, t in self._tasks.items() if not t.done())

    async def aclose(self) -> None:
        """Stop following, send what is buffered, and shut the provider down."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        provider = self.tracer.provider
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)  # flushes, maybe over the network
