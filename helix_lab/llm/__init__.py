"""LLM adapters, all speaking the streaming protocol of :mod:`helix_lab.llm.base`.

- ``AnthropicAdapter``: the real ``anthropic`` SDK (``base_url`` overridable)
- ``OpenAICompatAdapter``: any OpenAI-compatible server, over httpx
- ``ScriptedLLM``: deterministic turns written in Python
- ``OfflineLLM``: the keyless default that still uses tools and thinks aloud
- ``RecordingLLM`` / ``ReplayLLM``: record a run once, replay it byte for byte;
  ``ReplayLLM.from_session(path)`` replays an exported session; a request the recording
  never saw raises ``CassetteMismatch``

Vendor SDKs load only when an adapter that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .base import LLMAdapter, LLMError, LLMEvent, LLMRequest, Message, ToolSpec

_LAZY = {
    "AnthropicAdapter": "helix_lab.llm.anthropic",
    "OpenAICompatAdapter": "helix_lab.llm.openai_compat",
    "ScriptedLLM": "helix_lab.llm.scripted",
    "Turn": "helix_lab.llm.scripted",
    "call": "helix_lab.llm.scripted",
    "OfflineLLM": "helix_lab.llm.offline",
    "RecordingLLM": "helix_lab.llm.cassette",
    "ReplayLLM": "helix_lab.llm.cassette",
    "CassetteMismatch": "helix_lab.llm.cassette",
}

__all__ = [
    "AnthropicAdapter",
    "CassetteMismatch",
    "LLMAdapter",
    "LLMError",
    "LLMEvent",
    "LLMRequest",
    "Message",
    "OfflineLLM",
    "OpenAICompatAdapter",
    "RecordingLLM",
    "ReplayLLM",
    "ScriptedLLM",
    "ToolSpec",
    "Turn",
    "call",
]


__getattr__ = lazy_exports(__name__, _LAZY, globals())


if TYPE_CHECKING:
    from .anthropic import AnthropicAdapter
    from .cassette import CassetteMismatch, RecordingLLM, ReplayLLM
    from .offline import OfflineLLM
    from .openai_compat import OpenAICompatAdapter
    from .scripted import ScriptedLLM, Turn, call
