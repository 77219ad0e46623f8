"""``Default``: the Worker's front door, every request before any Durable Object.

It checks the configuration (``HELIX_TOKEN``, the ``AGENTS`` binding), converts the
request, and hands it to :func:`helix_lab.runtime.gateway.route` (bearer auth,
``/health``, ``/agents``, ``/sessions/{id}/...``, and the seed's ``/stream/{id}`` and
``/ws/{id}``) over a :class:`~.stubs.WorkerNamespace`. Failures become JSON errors: a 503
that names the fix for missing configuration or an unavailable object, a 500 (logged,
never a traceback on the wire) for anything unexpected. :class:`FrontDoor` is that
whole path; the Workflows approach's front door (``workflows_app.WorkflowsDefault``)
differs from ``Default`` only in its bindings and in what serves the sessions.
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

__all__ = ["Default", "FrontDoor"]

log = logging.getLogger("helix_lab.worker")


class FrontDoor(WorkerEntrypoint):
    """What every front door does: check the token and the configuration, convert the
    request, route it, and turn failures into JSON errors. Subclasses say what is
    missing (:meth:`_configuration_problem`) and what the sessions are (:meth:`_sessions`)."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._tasks: set[asyncio.Future[Any]] = set()

    def _configuration_problem(self, env: EnvView) -> Any:
        """The 503 response for a missing binding, or ``None``."""
        raise NotImplementedError

    def _sessions(self, env: EnvView) -> Any:
        """What :func:`~helix_lab.runtime.gateway.route` sends session requests to."""
        raise NotImplementedError

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
        problem = self._configuration_problem(env)
        if problem is not None:
            return problem
        try:
            inner = await to_helix_request(request)
        except BadMethod as exc:
            return worker_error(exc.status, exc.code, exc.message)
        response = await route(inner, self._sessions(env), token=token,
                               agent_types=lambda: load_agents(env).agent_types())

        def spawn(coro: Coroutine[Any, Any, Any]) -> Any:
            task = spawner(self._tasks)(coro)
            self.ctx.waitUntil(task)  # the Worker stays up until the body is written
            return task

        return to_worker_response(response, spawn)


class Default(FrontDoor):
    """Every request to the Worker: auth and routing; sessions go to their Durable Object."""

    def _configuration_problem(self, env: EnvView) -> Any:
        if env.get("AGENTS") is None:
            return worker_error(503, "not_configured", "The AGENTS Durable Object binding is "
                                "missing; add it to wrangler.toml ([[durable_objects.bindings]]).")
        return None

    def _sessions(self, env: EnvView) -> Any:
        return WorkerNamespace(env.get("AGENTS"))
