"""The Cloudflare Python Worker's classes: ``Default`` is the front door, ``HelixAgentServer``
the Durable Object. ``helix deploy`` writes a ``src/entry.py`` that imports both from here.

The Worker is split by concern:

- :mod:`.front_door`: ``Default``, bearer auth and routing through
  :func:`helix_lab.runtime.gateway.route`;
- :mod:`.durable_object`: ``HelixAgentServer``, the same
  :class:`~helix_lab.runtime.server.AgentServer` the kernel runs, over the object's own
  SQLite (:mod:`.do_sql`), with its WebSockets (:mod:`.sockets`);
- :mod:`.agents`: the agents module (``HELIX_AGENTS_MODULE``) and the default model;
- :mod:`.env`: :class:`~.env.EnvView`, ``env`` read as a mapping;
- :mod:`.stubs`: the ``AGENTS`` binding as the runtime's namespace;
- :mod:`.convert`: requests and responses between the ``workers`` SDK and the runtime;
- :mod:`.fetch_llm`: Claude over the Messages API through the Worker's ``fetch``.

Configuration, all from ``env`` (never from the bundle or from storage):

- ``HELIX_TOKEN`` (secret, required): the bearer token clients send. Without it every
  request gets a 503 that says how to set it.
- ``HELIX_AGENTS_MODULE`` (var, default ``helix_lab.examples``): see :mod:`.agents`.
- ``ANTHROPIC_API_KEY`` (secret, optional): Claude through the Worker's ``fetch``
  (:class:`~helix_lab.worker_bundle.fetch_llm.FetchAnthropicLLM`); ``ANTHROPIC_BASE_URL``
  overrides the endpoint. Without a key, the deterministic ``OfflineLLM``.

These modules import ``workers`` (and, lazily, ``js``). On CPython, install the stand-in
first: ``helix_lab.worker_bundle.standin.install()``.
"""

from __future__ import annotations

from .agents import DEFAULT_AGENTS_MODULE, AgentsUnavailable, load_agents
from .do_sql import DOSqlStorage
from .durable_object import HelixAgentServer
from .env import EnvView
from .front_door import Default
from .stubs import ObjectUnavailable, WorkerNamespace

__all__ = [
    "DEFAULT_AGENTS_MODULE",
    "AgentsUnavailable",
    "DOSqlStorage",
    "Default",
    "EnvView",
    "HelixAgentServer",
    "ObjectUnavailable",
    "WorkerNamespace",
    "load_agents",
]
