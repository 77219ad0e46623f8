"""The notebook's state, kept apart from IPython: which backend, which model, which views.

The magics are a thin command language over one :class:`Workbench`. Keeping it free of
IPython means it can be tested with plain asyncio, and the runtime below it never learns
that it is in a notebook.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from .client.backend import Backend, LocalBackend
    from .client.handle import AgentHandle
    from .llm.base import LLMAdapter, LLMEvent, LLMRequest
    from .otel import LiveTracing
    from .runtime.namespace import LocalNamespace
    from .runtime.registry import AgentRegistry
    from .runtime.server import LLMAdapterContext

__all__ = ["LLMChoice", "ModelOverride", "Workbench"]


def _bundled_agents() -> AgentRegistry:
    """The example agents every notebook can run by name: ``researcher``, ``briefing``."""
    from . import examples
    from .runtime.registry import AgentRegistry

    registry = AgentRegistry()
    registry.register(examples.researcher)
    registry.register(examples.briefing)
    return registry


class ModelOverride:
    """Send every request to ``model``, whatever the agent's config names."""

    def __init__(self, inner: LLMAdapter, model: str) -> None:
        self.inner = inner
        self.model = model

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        async for event in self.inner.stream(replace(request, model=self.model)):
            yield event

    def __repr__(self) -> str:
        return f"{self.inner!r} with model {self.model!r}"


@dataclass
class LLMChoice:
    """The model the next run will use, and a one-line description of it (no secrets)."""

    kind: str
    adapter: Any
    label: str


def default_llm() -> LLMChoice:
    """Claude when ``ANTHROPIC_API_KEY`` is set, else the offline model."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        from .llm.anthropic import AnthropicAdapter

        return LLMChoice("anthropic", AnthropicAdapter(), "anthropic (key from ANTHROPIC_API_KEY)")
    from .llm.offline import OfflineLLM

    return LLMChoice("offline", OfflineLLM(), "offline (no API key set: a deterministic "
                     "stand-in model; set ANTHROPIC_API_KEY for Claude)")


class Workbench:
    """Backends, model choice and sessions of one notebook."""

    def __init__(self, storage: str | os.PathLike[str] | None = None, *,
                 namespace: Mapping[str, Any] | None = None) -> None:
        from .runtime.registry import NamespaceAgents, default_registry

        self.storage = str(storage or os.environ.get("HELIX_STORAGE") or ".helix")
        self.registry = NamespaceAgents({} if namespace is None else namespace,
                                        default_registry, _bundled_agents())
        """The agents runnable by name: those ``namespace`` (the notebook's variables)
        holds when asked, then those registered by hand in ``default_registry``, then the
        bundled examples."""
        self.llm: LLMChoice = default_llm()
        self._local: LocalBackend | None = None
        self._workflows: LocalBackend | None = None
        self.approaches: dict[str, str] = {}
        """Session id -> ``"workflows"`` for the sessions run with ``--approach workflows``."""
        self.backend_name = "local"
        self._remote: Backend | None = None
        self.sessions: dict[str, str] = {}
        """Session id -> agent type, for the sessions this notebook started or opened."""
        self.last_session: str | None = None
        self.serve_process: Any = None
        self.otel: LiveTracing | None = None
        """OpenTelemetry export of runs, when on (``%helix otel``)."""

    # -- models ----------------------------------------------------------------------------

    def llm_factory(self, env: Any, context: LLMAdapterContext) -> LLMAdapter:
        """The server's ``llm_adapter``: read at each run, so a switch applies to the next."""
        return self.llm.adapter

    def use_llm(self, kind: str, *args: str) -> LLMChoice:
        """Switch the model: offline, replay PATH, record PATH, anthropic [BASE_URL],
        openai URL MODEL, or auto [PATH] (Claude when ANTHROPIC_API_KEY is set, else the
        cassette at PATH, else the offline model)."""
        if kind == "offline":
            from .llm.offline import OfflineLLM

            self.llm = LLMChoice("offline", OfflineLLM(), "offline (deterministic stand-in)")
        elif kind == "anthropic":
            if not os.environ.get("ANTHROPIC_API_KEY"):
                raise UserError("ANTHROPIC_API_KEY is not set; set it in the environment "
                                "(never in the notebook) and try again.")
            from .llm.anthropic import AnthropicAdapter

            base_url = args[0] if args else None
            self.llm = LLMChoice("anthropic", AnthropicAdapter(base_url=base_url),
                                 "anthropic (key from ANTHROPIC_API_KEY)"
                                 + (f" at {base_url}" if base_url else ""))
        elif kind == "openai":
            if len(args) != 2:
                raise UserError("Usage: %helix llm openai URL MODEL, e.g. "
                                "%helix llm openai http://127.0.0.1:11434/v1 llama3.2")
            from .llm.openai_compat import OpenAICompatAdapter

            url, model = args
            self.llm = LLMChoice("openai", ModelOverride(OpenAICompatAdapter(url), model),
                                 f"openai-compatible {model} at {url}")
        elif kind == "auto":
            if os.environ.get("ANTHROPIC_API_KEY"):
                return self.use_llm("anthropic")
            if not args:
                return self.use_llm("offline")
            self.use_llm("replay", *args)
            self.llm.label += " (set ANTHROPIC_API_KEY for Claude)"
        elif kind == "replay":
            if len(args) != 1:
                raise UserError("Usage: %helix llm replay PATH (a .jsonl cassette).")
            if not os.path.exists(args[0]):
                raise UserError(f"No cassette at {args[0]!r}; record one with "
                                "%helix llm record PATH.")
            from .llm.cassette import ReplayLLM

            self.llm = LLMChoice("replay", ReplayLLM(args[0]), f"replay of {args[0]}")
        elif kind == "record":
            if len(args) != 1:
                raise UserError("Usage: %helix llm record PATH: records the current model.")
            from .llm.cassette import RecordingLLM

            self.llm = LLMChoice("record", RecordingLLM(self.llm.adapter, args[0]),
                                 f"{self.llm.label}, recorded to {args[0]}")
        else:
            raise UserError(f"Unknown model {kind!r}. Choose offline, scripted VAR, replay "
                            "PATH, record PATH, anthropic, openai URL MODEL, or auto [PATH].")
        return self.llm

    def use_adapter(self, adapter: Any, label: str) -> LLMChoice:
        """Use an adapter object (``%helix llm scripted VAR``)."""
        if not callable(getattr(adapter, "stream", None)):
            raise UserError(f"{label} is not an LLM adapter (it has no stream() method).")
        self.llm = LLMChoice("scripted", adapter, label)
        return self.llm

    # -- backends --------------------------------------------------------------------------

    @property
    def local(self) -> LocalBackend:
        if self._local is None:
            from .client.backend import LocalBackend
            from .runtime.namespace import LocalNamespace
            from .runtime.server import create_agent_server

            server = create_agent_server(llm_adapter=self.llm_factory, agents=self.registry)
            self._local = LocalBackend(LocalNamespace(server, storage=self.storage))
        return self._local

    @property
    def workflows(self) -> LocalBackend:
        """The in-kernel Workflows approach (``--approach workflows``), under
        ``<storage>/workflows``: the same handle API over memoized workflow steps."""
        if self._workflows is None:
            from .client.backend import LocalBackend
            from .workflows import WorkflowSessions, local_workflows

            storage = ":memory:" if self.storage == ":memory:" else os.path.join(
                self.storage, "workflows")
            wf = local_workflows(llm_adapter=self.llm_factory, agents=self.registry,
                                 storage=storage)
            self._workflows = LocalBackend(WorkflowSessions(wf, self.registry))  # type: ignore[arg-type]
        return self._workflows

    @property
    def namespace(self) -> LocalNamespace:
        return self.local.namespace

    @property
    def backend(self) -> Backend:
        if self.backend_name == "local" or self._remote is None:
            return self.local
        return self._remote

    def backend_for(self, name: str | None, approach: str | None = None) -> Backend:
        if approach == "workflows":
            if name == "remote" or (name in (None, "") and self.backend_name != "local"):
                raise UserError("--approach workflows runs in the kernel; a remote backend "
                                "serves the approach it was started with (helix serve "
                                "--approach workflows).")
            return self.workflows
        if approach not in (None, "", "durable-objects"):
            raise UserError(f"Unknown approach {approach!r}: use 'durable-objects' or "
                            "'workflows'.")
        if name in (None, ""):
            return self.backend
        if name == "local":
            return self.local
        if name == "remote":
            if self._remote is None:
                raise UserError("No remote backend yet: %helix use URL --token-env VAR first.")
            return self._remote
        raise UserError(f"Unknown backend {name!r}: use 'local' or 'remote'.")

    def use_local(self) -> None:
        self.backend_name = "local"

    async def use_remote(self, url: str, token: str | None) -> list[str]:
        """Switch to the server at ``url`` once it has answered; returns its agents.

        A server that is unreachable or refuses the token leaves the backend as it was.
        """
        from .client.backend import RemoteBackend

        remote = RemoteBackend(url, token)
        try:
            agents = await remote.agents()
        except BaseException:
            await remote.aclose()
            raise
        if self._remote is not None:
            await self._remote.aclose()
        self._remote, self.backend_name = remote, "remote"
        return agents

    # -- OpenTelemetry ---------------------------------------------------------------------

    async def use_otel(self, endpoint: str | None = None, *, provider: Any = None,
                       capture_content: bool = False) -> str:
        """Trace every run this notebook starts from now on; returns where spans go.

        Spans go over OTLP/HTTP to ``endpoint`` (else the ``OTEL_EXPORTER_OTLP_*``
        variables), or to ``provider``, an OpenTelemetry SDK tracer provider.
        """
        await self.stop_otel()
        return self.start_otel(endpoint, provider=provider, capture_content=capture_content)

    def start_otel(self, endpoint: str | None = None, *, provider: Any = None,
                   capture_content: bool = False) -> str:
        """:meth:`use_otel` when tracing is off (at ``%load_ext``, from the variables)."""
        from .otel import LiveTracing, RunTracer, otlp_endpoint, otlp_provider

        if self.otel is not None:
            raise UserError("OpenTelemetry export is already on; %helix otel off first.")
        if provider is None:
            label = f"OTLP/HTTP to {otlp_endpoint(endpoint)}"
            provider = otlp_provider(endpoint)
        else:
            label = type(provider).__name__
        self.otel = LiveTracing(RunTracer(provider, capture_content=capture_content), label)
        return label

    async def stop_otel(self) -> None:
        otel, self.otel = self.otel, None
        if otel is not None:
            await otel.aclose()

    def trace(self, handle: AgentHandle, from_sequence: int = 0) -> None:
        """Trace the session's runs from ``from_sequence`` on, when tracing is on."""
        if self.otel is not None:
            self.otel.follow(handle, from_sequence)

    async def aclose(self) -> None:
        """Stop the local runs, close the databases and the HTTP clients, stop a server
        that ``%helix serve`` started. The workbench stays usable: the next call opens
        what it needs again (so ``%reload_ext`` works)."""
        await self.stop_otel()
        local, self._local = self._local, None
        workflows, self._workflows = self._workflows, None
        remote, self._remote = self._remote, None
        server, self.serve_process = self.serve_process, None
        self.backend_name = "local"
        if local is not None:
            await local.aclose()
            await local.namespace.aclose()
        if workflows is not None:
            await workflows.aclose()
            await workflows.namespace.aclose()
        if remote is not None:
            await remote.aclose()
        if server is not None:
            await asyncio.to_thread(server.stop)  # it waits for the process to exit

    def describe_backend(self) -> str:
        if self.backend_name == "local":
            return f"local (sqlite under {self.storage}/)"
        return f"remote ({self.backend.describe()})"

    # -- agents and sessions ---------------------------------------------------------------

    def agent_types(self) -> list[str]:
        return self.registry.get_registered_types()

    def remember(self, session_id: str, agent_type: str | None,
                 approach: str | None = None) -> None:
        self.sessions[session_id] = agent_type or self.sessions.get(session_id, "?")
        self.last_session = session_id
        if approach == "workflows":
            self.approaches[session_id] = approach

    def backend_of(self, session_id: str) -> Backend:
        """The backend a session lives on: the Workflows one if it was run that way."""
        if self.approaches.get(session_id) == "workflows" and self.backend_name == "local":
            return self.workflows
        return self.backend

    def resolve_session(self, session_id: str | None) -> str:
        session_id = session_id or self.last_session
        if not session_id:
            raise UserError("No session yet: run a %%helix_agent cell, or name one "
                            "(%helix sessions lists them).")
        return session_id

    def stored_sessions(self) -> list[dict[str, Any]]:
        """Sessions on disk in the local namespace: id, agent, status, oldest first."""
        rows = []
        for session in self.namespace.stored_sessions():
            rows.append({"sessionId": session["session_id"], "agentType": session["agent_type"],
                         "status": session["status"], "updatedAt": session["updated_at"]})
        return sorted(rows, key=lambda r: r["updatedAt"])
