"""``AgentHandle``: one session, seen from the notebook, with every control a user needs.

The class is defined in :mod:`helix_lab.runtime.handle`, so that the hooks inside an agent
server get the very same handle over the object they run in; this is its public home.
"""

from __future__ import annotations

from ..errors import RunInterrupted, RunPaused
from ..runtime.handle import AgentHandle, ResumeCheck, SessionClient

__all__ = ["AgentHandle", "ResumeCheck", "RunInterrupted", "RunPaused", "SessionClient"]
