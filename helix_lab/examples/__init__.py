"""Example agents that work with no setup: ``researcher`` and ``briefing``.

``researcher`` searches a small corpus of animal facts shipped with the package, keeps
its queries and findings in its state, and answers. ``briefing`` delegates to
``researcher`` as a sub-agent and returns a structured :class:`Briefing`. The notebook
workbench offers both by name, after the agents a notebook defines; as an agents module
(``helix serve``, the default) it serves both.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, Field

from ..agent import Agent, LLMConfig
from ..errors import ToolError
from ..tools import ToolContext, tool

__all__ = ["Briefing", "ResearchNotes", "briefing", "corpus", "researcher"]


@cache
def corpus() -> list[dict[str, Any]]:
    """The bundled notes: ``{"id", "title", "tags", "text"}`` each."""
    text = resources.files(__package__).joinpath("corpus.json").read_text(encoding="utf-8")
    return json.loads(text)


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


class ResearchNotes(BaseModel):
    """The researcher's state: what it searched for and what it kept."""

    queries: list[str] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list)


@tool
def search_notes(query: str, ctx: ToolContext, limit: int = 3) -> list[dict[str, str]]:
    """Search the notes corpus by keywords. Returns the best matches, each with an id."""
    ctx.update_state(lambda s: s.queries.append(query))
    wanted = _words(query)
    scored = []
    for note in corpus():
        score = 2 * len(wanted & _words(" ".join(note["tags"]))) + len(
            wanted & _words(note["title"] + " " + note["text"]))
        if score:
            scored.append((score, note))
    scored.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
    return [{"id": n["id"], "title": n["title"]} for _, n in scored[:limit]]


@tool
def save_finding(finding: str, ctx: ToolContext) -> str:
    """Keep a finding in the agent's state, to use in the final answer."""
    ctx.update_state(lambda s: s.findings.append(finding))
    return f"Saved finding #{len(ctx.get_state().findings)}."


@tool
def read_note(note_id: str) -> dict[str, Any]:
    """Read one note in full, by the id that search_notes returned."""
    for note in corpus():
        if note["id"] == note_id:
            return note
    raise ToolError(f"No note {note_id!r}; use an id from search_notes.")


researcher = Agent(
    name="researcher",
    description="Researches a question in the bundled notes corpus and answers it.",
    system_prompt=(
        "You are a careful researcher. Search the notes corpus, read the notes that matter, "
        "save each finding you will rely on, then answer briefly, citing note ids."
    ),
    tools=[search_notes, save_finding, read_note],
    state_schema=ResearchNotes,
    llm_config=LLMConfig(max_tokens=1024),
    max_steps=8,
)


class Briefing(BaseModel):
    """A structured answer."""

    summary: str
    key_points: list[str] = Field(default_factory=list)


briefing = Agent(
    name="briefing",
    description="Writes a short structured briefing, delegating research to researcher.",
    system_prompt=(
        "Write a short briefing. Delegate the research to the researcher sub-agent, then "
        "call __finish__ with a summary and key points."
    ),
    agents=[researcher],
    output_schema=Briefing,
    llm_config=LLMConfig(max_tokens=1024),
    max_steps=4,
)
