"""The stand-in's ``[[workflows]]`` binding: the JavaScript-shaped API over a local engine.

On Cloudflare the Workflows binding is a JavaScript object: ``create({id, params})``,
``get(id)``, and on an instance ``status()``, ``pause()``, ``resume()``, ``terminate()``,
``restart({from})`` and ``sendEvent({type, payload})``. :class:`WorkflowBinding` gives
that shape to any engine with the Python one (``create(id=, params=)``, ``send_event(type,
payload)``), such as ``helix_lab.workflows.LocalWorkflowBinding``, which ``helix serve``
passes in. Like the rest of the stand-in, it imports nothing from ``helix_lab``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WorkflowBinding", "WorkflowInstance"]


class WorkflowInstance:
    """``env.AGENT_WORKFLOW.get(id)``, as a Worker sees it.

    Where the JavaScript shape and the engine's agree (``status()``, ``pause()``,
    ``resume()``, ``terminate()``, ``restart(options)``, and ``steps()``, which is not on
    Cloudflare's binding but lets the stand-in show the engine's steps), the engine's own
    method answers; only ``sendEvent`` is reshaped. Nothing else of the engine shows through.
    """

    _SAME_SHAPE = frozenset({"status", "pause", "resume", "terminate", "restart", "steps"})

    def __init__(self, instance: Any) -> None:
        self._instance = instance
        self.id = instance.id

    def __getattr__(self, name: str) -> Any:
        if name in self._SAME_SHAPE:
            return getattr(self._instance, name)
        raise AttributeError(f"a Workflow instance has no {name!r}")

    async def sendEvent(self, event: dict[str, Any]) -> None:
        await self._instance.send_event(event.get("type"), event.get("payload"))


class WorkflowBinding:
    """``env.AGENT_WORKFLOW`` over a local engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def create(self, options: dict[str, Any] | None = None) -> WorkflowInstance:
        options = options or {}
        return WorkflowInstance(await self.engine.create(id=options.get("id"),
                                                         params=options.get("params")))

    async def createBatch(self, batch: list[dict[str, Any]]) -> list[WorkflowInstance]:
        return [await self.create(options) for options in batch]

    async def get(self, instance_id: str) -> WorkflowInstance:
        return WorkflowInstance(await self.engine.get(instance_id))
