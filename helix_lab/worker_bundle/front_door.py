"""``Default``: the Worker's front door, every request before any Durable Object.

It checks the configuration (``HELIX_TOKEN``, the ``AGENTS`` binding), converts the
request, and hands it to :func:`helix_lab.runtime.gateway.route` (bearer auth,
``/health``, ``/agents``, ``/sessions/{id}/...``, and the seed's ``/stream/{id}`` and
``/ws/{id}``) over a :class:`~.stubs.WorkerNamespace`. Failures become JSON errors: a 503
that names the fix for missing configuration or an unavailable object, a 500 (logged,
never a traceback on the wire) for anything unexpected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from workers import WorkerEntrypoint

from ..runtime.gateway import route
from .agents import AgentsUnavailable, load_agents
from .convert import BadMethod, spawner, to_helix_request, to_worker_response, worker_error
from .env import EnvView
from .stubs import ObjectUnavailable, WorkerNamespace

__all__ = ["Default"]

log = logging.getLogger("helix_lab.worker")


class Default(WorkerEntrypoint):
    """Every request to the Worker: auth and routing; sessions go to their Durable Object."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._tasks: set[asyncio.Future[Any]] = set()

    async def fetch(self, request: Any) -> Any:
        try:
            return await self._fetch(request)
        except AgentsUnavailable as exc:
            return worker_error(503, "agents_unavailable", str(exc))
        except ObjectUnavailable as exc:
            log.error("a session object did not answer: %s", exc)
            return worker_error(503, "object_unavailable", "The session's object did not "
                                "answer; try again.")
        except Exception as exc:
            log.error("the Worker failed on a request: %s: %s", type(exc).__name__, exc)
            return worker_error(500, "internal_error", "The Worker hit an unexpected error; "
                                "see its log.")

    async def _fetch(self, request: Any) -> Any:
        env = EnvView(self.env)
        token = env.get("HELIX_TOKEN")
        if not token:
            return worker_error(503, "not_configured", "HELIX_TOKEN secret is not set; run "
                                "wrangler secret put HELIX_TOKEN")
        binding = env.get("AGENTS")
        if binding is None:
            return worker_error(503, "not_configured", "The AGENTS Durable Object binding is "
                                "missing; add it to wrangler.toml ([[durable_objects.bindings]]).")
        try:
            inner = await to_helix_request(request)
        except BadMethod:
            return worker_error(405, "method_not_allowed", "Use GET or POST.")
        response = await route(inner, WorkerNamespace(binding), token=token,
                               agent_types=lambda: load_agents(env).agent_types())

        def spawn(coro: Coroutine[Any, Any, Any]) -> Any:
            task = spawner(self._tasks)(coro)
            self.ctx.waitUntil(task)  # the Worker stays up until the body is written
            return task

        return to_worker_response(response, spawn)
