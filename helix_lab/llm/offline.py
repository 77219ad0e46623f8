"""``OfflineLLM``: the default model when there is no API key.

It is not clever, but it behaves like an agentic model so that everything around it can
be seen working: it thinks aloud, calls the agent's first tool with the keywords of the
question, passes what it found to a second tool if there is one, and then answers from
the tool results (or calls ``__finish__`` when the agent has an output schema). It is
deterministic, so notebooks that use it can be checked output for output.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from ..agent import FINISH_TOOL
from .base import LLMEvent, LLMRequest
from .scripted import ScriptedLLM, Turn

__all__ = ["OFFLINE_MODEL", "OfflineLLM"]

OFFLINE_MODEL = "helix-offline"
"""The model its usage is reported under: unpriced, so the offline model never shows a cost."""

_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "about", "brief", "can", "could", "did", "do", "does", "for", "from", "how", "i", "in", "is", "it", "me", "of", "on", "or", "please", "tell", "the", "to", "was", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your"])


def _keywords(text: str, limit: int = 4) -> str:
    words = [w for w in re.findall(r"[A-Za-z0-9]+", text.lower()) if w not in _STOPWORDS]
    return " ".join(words[:limit]) or text[:40]


def _string_param(schema: dict[str, Any]) -> str | None:
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") == "string":
            return name
    return None


def _results_since_question(messages: list[dict[str, Any]]) -> tuple[str, list[Any], set[str]]:
    """The last user question, the tool outputs after it, and the tools already used."""
    question, results, used = "", [], set()
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            question, results, used = content, [], set()
        elif isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_use":
                    used.add(block["name"])
                elif block.get("type") == "tool_result" and not block.get("is_error"):
                    try:
                        results.append(json.loads(block["content"]))
                    except (TypeError, ValueError):
                        results.append(block["content"])
    return question, results, used


def _lines(results: list[Any]) -> list[str]:
    """Readable lines from the first tool result (the search; later ones are receipts)."""
    if not results:
        return []
    first = results[0]
    if isinstance(first, str):
        return [line.strip().lstrip("- ") for line in first.splitlines()
                if line.strip() and not line.rstrip().endswith(":")]
    lines: list[str] = []
    for item in first if isinstance(first, list) else [first]:
        if isinstance(item, dict):
            lines.append(str(item.get("title") or item.get("text") or json.dumps(item)))
        elif item is not None:
            lines.append(str(item))
    return lines


def _fill(schema: dict[str, Any], summary: str, lines: list[str]) -> dict[str, Any]:
    """A value for every required property of a JSON schema."""
    out: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type")
        out[name] = {"string": summary, "array": lines[:3], "integer": len(lines),
                     "number": float(len(lines)), "boolean": bool(lines),
                     "object": {}}.get(kind, summary)
    return out


class OfflineLLM:
    """A deterministic stand-in for a real model; see the module docstring."""

    __test__ = False

    def __init__(self, *, chunk_delay: float = 0.02) -> None:
        self.chunk_delay = chunk_delay

    def plan(self, request: LLMRequest) -> Turn:
        """The turn this model takes for ``request``."""
        question, results, used = _results_since_question(request.messages)
        tools = [t for t in request.tools if t["name"] != FINISH_TOOL]
        lines = _lines(results)
        topic = _keywords(question)
        summary = (f"On '{topic}': " + "; ".join(lines[:3])) if lines else \
            f"I found nothing on '{topic}'."
        finish = next((t for t in request.tools if t["name"] == FINISH_TOOL), None)
        if request.tool_choice == FINISH_TOOL and finish is not None:
            return Turn(thinking="Time to give the final answer.", tool_calls=[
                {"name": FINISH_TOOL, "input": _fill(finish["input_schema"], summary, lines)}])
        usable = [t for t in tools if _string_param(t["input_schema"]) and t["name"] not in used]
        if usable and not results and not used:
            first = usable[0]
            return Turn(
                thinking=f"The question is about '{topic}'. I'll start with {first['name']}.",
                tool_calls=[{"name": first["name"],
                             "input": {_string_param(first["input_schema"]): topic}}])
        if usable and lines and len(used) == 1:
            second = usable[0]
            return Turn(
                thinking=f"I found {len(lines)} result(s). I'll record the best one with "
                         f"{second['name']}.",
                tool_calls=[{"name": second["name"],
                             "input": {_string_param(second["input_schema"]): lines[0]}}])
        if finish is not None:
            return Turn(thinking="I have what I need.", tool_calls=[
                {"name": FINISH_TOOL, "input": _fill(finish["input_schema"], summary, lines)}])
        if lines:
            bullets = "\n".join(f"- {line}" for line in lines[:5])
            return Turn(text=f"Here is what I found about {topic}:\n{bullets}")
        return Turn(text=f"You asked about {topic}. (This is the offline model; set "
                         "ANTHROPIC_API_KEY or use %helix llm to talk to a real one.)")

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        player = ScriptedLLM([self.plan(request)], chunk_delay=self.chunk_delay)
        async for event in player.stream(request):
            if event["type"] == "usage":
                # Not Claude, whatever the agent's config names: a stand-in has no price.
                event = {**event, "model": OFFLINE_MODEL}  # type: ignore[typeddict-item]
            yield event
