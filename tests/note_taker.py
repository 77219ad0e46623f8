"""The note-taking agent many runtime tests run: ``remember`` adds a word to its ``Notes``
state, so each step leaves a visible trace in the state, the messages and the chunks."""

from __future__ import annotations

from typing import Any

import pydantic

from helix_lab.agent import Agent
from helix_lab.llm.scripted import Turn, call
from helix_lab.tools import ToolContext, tool


class Notes(pydantic.BaseModel):
    notes: list[str] = []


@tool
def remember(word: str, ctx: ToolContext) -> str:
    """Remember a word."""
    ctx.update_state(lambda s: s.notes.append(word))
    return f"remembered {word}"


def notes_agent(name: str = "a", **options: Any) -> Agent:
    """An agent with ``remember`` (plus ``tools``) and the :class:`Notes` state."""
    return Agent(name=name, tools=[remember, *options.pop("tools", [])], state_schema=Notes,
                 register=False, **options)


def remember_turn(word: str) -> Turn:
    return Turn(text=f"Noting {word}.", tool_calls=[call("remember", word=word)])
