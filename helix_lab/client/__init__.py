"""Client handles: start, watch and steer agent sessions on either backend."""

from .backend import Backend, LocalBackend, RemoteBackend, poll_until
from .handle import AgentHandle, ResumeCheck, RunInterrupted

__all__ = ["AgentHandle", "Backend", "LocalBackend", "RemoteBackend", "ResumeCheck", "RunInterrupted",
           "poll_until"]
