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
    """``env.AGENT_WORKFLOW.get(id)``, as a Worker sees it."""

    def __init__(self, instance: Any) -> None:
        self._instance = instance
        self.id = instance.id

    async def status(self) -> dict[str, Any]:
        return await self._instance.status()

    async def pause(self) -> None:
        await self._instance.pause()

    async def resume(self) -> None:
        await self._instance.resume()

    async def terminate(self) -> None:
        await self._instance.terminate()

    async def restart(self, options: dict[str, Any] | None = None) -> None:
        await self._instance.restart(options)

    async def sendEvent(self, event: dict[str, Any]) -> None:
        await self._instance.send_event(event.get("type"), event.get("payload"))

    async def steps(self) -> list[dict[str, Any]]:
        """Not on Cloudflare's binding: the stand-in shows the engine's steps."""
        return await self._instance.steps()


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
