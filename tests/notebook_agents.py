"""The agents the notebook tests define in a cell: in an IPython kernel (test_magics,
test_debugging_ui) and in real JupyterLab (tests/browser).

Each is source text, as a user would type it into a cell. A test appends its own model
script (a ``next_turn`` or ``plan`` function for ``ScriptedLLM``), which picks its turn
from ``tool_results(request)``.
"""

from __future__ import annotations

TOOL_RESULTS = '''
def tool_results(request):
    # The turn is chosen from the tool results the model has seen, so a step that is cut
    # and rerun (interrupt, resume), or a run forked from a checkpoint, gets the right turn.
    return [block["content"] for m in request.messages if isinstance(m.get("content"), list)
            for block in m["content"] if block.get("type") == "tool_result"]
'''

PARTS = '''
from pydantic import BaseModel
from helix_lab import Agent, ToolContext, tool
from helix_lab.llm import ScriptedLLM, Turn, call

class Progress(BaseModel):
    parts_done: list[int] = []

@tool
def work(part: int, ctx: ToolContext) -> str:
    """Do one part of the job."""
    ctx.update_state(lambda s: s.parts_done.append(part))
    return f"part {part} done"
''' + TOOL_RESULTS
"""The ``work`` tool, which adds each part it does to the ``Progress`` state."""

MAILER = '''
from helix_lab import Agent, tool
from helix_lab.llm import ScriptedLLM, Turn, call

@tool(requires_approval=True)
def send_email(to: str, subject: str) -> str:
    """Send an email (a person approves it first)."""
    return f"sent to {to}: {subject}"

mailer = Agent(name="mailer", tools=[send_email])
''' + TOOL_RESULTS
"""The ``mailer`` agent, whose one tool waits for a person's approval."""
