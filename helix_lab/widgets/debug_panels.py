"""The debugging parts of ``AgentView``: the approval panel and the step inspector.

- :class:`ApprovalPanel` lists each tool call that waits for approval, with its tool name,
  its arguments in an editable JSON box, Approve (with the arguments as edited) and Deny
  (with a message). It is empty, and takes no room, when nothing waits.
- :class:`StepInspector` shows what the model was sent and returned at one step
  (``GET /steps/{step}``), picked by clicking a step in the timeline, and offers
  "Edit output and re-run from here" for each of the step's tool results.

Both only draw and call the view's handle; the view owns the loop, the stream and the
notes shown to the user, so a refusal is a note, never a traceback.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Protocol

import ipywidgets as widgets

from .render import render_step

__all__ = ["STEP_BUTTONS", "ApprovalPanel", "PanelHost", "StepInspector", "editable_output"]

STEP_BUTTONS = 60
"""Steps the timeline offers as buttons (the newest); any other is opened by number."""


class PanelHost(Protocol):
    """What the panels call on the view that holds them (``AgentView``)."""

    def decide(self, tool_call_id: str, action: str) -> Any: ...

    def open_step(self, step: int) -> Any: ...

    def rerun_with_output(self, tool_call_id: str, text: str) -> Any: ...


def _parse_json(text: str, what: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError as exc:
        return False, f"{what} is not valid JSON ({exc}); fix it and try again."


def editable_output(output: Any) -> str:
    """A tool result as the text its editor shows: a string as it is, anything else as JSON,
    which ``AgentView.rerun_with_output`` reads back to the same value (``str()`` of a dict
    would be a Python repr, sent back as a plain string)."""
    return output if isinstance(output, str) else json.dumps(output, indent=1)


class ApprovalPanel(widgets.VBox):
    """Approve, edit or deny the tool calls a paused session waits on."""

    def __init__(self, view: PanelHost) -> None:
        super().__init__([])
        self.view = view
        self.rows: dict[str, dict[str, widgets.Widget]] = {}
        self.add_class("helix-approvals")

    def refresh(self, pending: dict[str, dict[str, Any]]) -> None:
        """Draw one row per waiting call; rows of calls still waiting keep their edits."""
        if set(pending) == set(self.rows):
            return
        rows = {}
        for call_id, call in pending.items():
            rows[call_id] = self.rows.get(call_id) or self._row(call_id, call)
        self.rows = rows
        self.children = [row["box"] for row in rows.values()]

    def _row(self, call_id: str, call: dict[str, Any]) -> dict[str, widgets.Widget]:
        title = widgets.HTML(f"<b>{escape(str(call['toolName']))}</b> (step {call['step']}) "
                             "waits for "
                             "approval: edit its arguments, then approve or deny it")
        editor = widgets.Textarea(value=json.dumps(call["input"], indent=1),
                                  rows=max(3, min(12, len(call["input"] or {}) + 2)),
                                  layout=widgets.Layout(width="98%"))
        editor.add_class("helix-approval-input")
        approve = widgets.Button(description="Approve", icon="check", button_style="success",
                                 tooltip="Run the call with the arguments as they are above")
        deny = widgets.Button(description="Deny", icon="times", button_style="danger",
                              tooltip="Do not run it; the model is told, with the message")
        message = widgets.Text(placeholder="why (the model reads this)",
                               layout=widgets.Layout(width="50%"))
        approve.on_click(lambda _b: self.view.decide(call_id, "approve"))
        deny.on_click(lambda _b: self.view.decide(call_id, "deny"))
        box = widgets.VBox([title, editor, widgets.HBox([approve, deny, message])],
                           layout=widgets.Layout(border="1px solid #fb8c00", padding="4px",
                                                 margin="4px 0"))
        return {"box": box, "editor": editor, "message": message, "original": call["input"],
                "approve": approve, "deny": deny}

    def decision(self, call_id: str, action: str) -> tuple[bool, Any]:
        """``(True, kwargs for the handle)`` or ``(False, the problem to show)``."""
        row = self.rows.get(call_id)
        if row is None:
            return False, "That call no longer waits for approval."
        if action == "deny":
            return True, {"message": row["message"].value.strip() or "Denied in the view."}
        ok, value = _parse_json(row["editor"].value, "The edited arguments")
        if not ok:
            return False, value
        return True, ({} if value == row["original"] else {"input": value})


class StepInspector(widgets.VBox):
    """One step, as the model saw it; opened from the timeline or by number."""

    def __init__(self, view: PanelHost) -> None:
        self.view = view
        self.picker = widgets.ToggleButtons(options=[], value=None, description="open step",
                                            style={"button_width": "36px",
                                                   "description_width": "initial"})
        self.picker.add_class("helix-step-picker")
        self.picker.observe(self._picked, names="value")
        self.number = widgets.BoundedIntText(value=1, min=1, max=10**9, description="step",
                                             layout=widgets.Layout(width="140px"))
        self.open_button = widgets.Button(description="Open", icon="search")
        self.open_button.on_click(lambda _b: view.open_step(self.number.value))
        self.body = widgets.HTML('<div class="hx-info">click a step in the timeline</div>')
        self.body.add_class("helix-step-view")
        self.edits = widgets.VBox([])
        self.shown: dict[str, Any] | None = None
        super().__init__([widgets.HBox([self.number, self.open_button]), self.body, self.edits])

    def set_steps(self, steps: list[int]) -> None:
        """Offer the newest steps as buttons in the timeline."""
        options = [str(s) for s in steps[-STEP_BUTTONS:]]
        if list(self.picker.options) != options:
            current = self.picker.value
            self.picker.options = options
            self.picker.value = current if current in options else None

    def _picked(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.view.open_step(int(change["new"]))

    def show(self, view: dict[str, Any]) -> None:
        self.shown = view
        self.number.value = view["step"]
        self.body.value = render_step(view)
        rows = []
        for result in view["toolResults"]:
            editor = widgets.Textarea(value=editable_output(result["output"]), rows=3,
                                      layout=widgets.Layout(width="98%"))
            editor.add_class("helix-result-editor")
            rerun = widgets.Button(description="Edit output and re-run from here",
                                   icon="code-branch", layout=widgets.Layout(width="auto"),
                                   tooltip="Fork a branch with this output; only later steps "
                                           "run again")
            call_id = result["toolCallId"]
            rerun.on_click(lambda _b, c=call_id, e=editor: self.view.rerun_with_output(c, e.value))
            rows.append(widgets.VBox([widgets.HTML(f"output of <code>{escape(str(call_id))}</code>"), editor,
                                      rerun]))
        self.edits.children = rows
