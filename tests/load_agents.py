"""The agents of tests/test_rel_load.py, in process and under ``helix serve --agents``.

The bundled ``researcher`` and ``briefing`` on the offline model, with one change: a
``briefing`` run of a session named ``*-held-*`` waits before each model call until a
file named after the session exists in the gate directory (``$HELIX_LOAD_GATE`` under
``helix serve``). The bursts use such sessions, so the run a burst started is still going
when every other request of the burst is answered, however fast the machine is; an
interrupt cuts the waiting call, and the test creates the file when the burst is over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from e2e_scenario import wait_for_file

from helix_lab import examples
from helix_lab.llm.offline import OfflineLLM
from helix_lab.runtime import AgentRegistry

__all__ = ["HeldLLM", "gated_adapter", "llm_adapter", "registry"]

registry = AgentRegistry()
registry.register(examples.researcher)
registry.register(examples.briefing)


class HeldLLM:
    """The offline model, first waiting for ``gate`` when there is one."""

    def __init__(self, gate: Path | None) -> None:
        self.gate, self.model = gate, OfflineLLM()

    async def stream(self, request: Any) -> Any:
        if self.gate is not None:
            await wait_for_file(self.gate)
        async for event in self.model.stream(request):
            yield event


def gated_adapter(gates: Path) -> Any:
    """An ``llm_adapter`` holding the ``briefing`` runs of ``*-held-*`` sessions."""

    def adapter(env: Any, context: Any) -> HeldLLM:
        held = context.agent_type == "briefing" and "-held-" in context.session_id
        return HeldLLM(gates / context.session_id if held else None)

    return adapter


def llm_adapter(env: Any, context: Any) -> HeldLLM:
    return gated_adapter(Path(os.environ["HELIX_LOAD_GATE"]))(env, context)
