"""``AgentView``: the live widget of one session, with its controls.

It follows the session's chunk stream in a task on the kernel's event loop, folds each
chunk into a :class:`ViewState`, and redraws at most once per ``min_interval`` seconds,
so a model streaming 10,000 chunks a second costs the front end a handful of messages.
Buttons call the same :class:`~helix_lab.client.AgentHandle` methods a user would call in
code; a refusal from the backend is shown under the buttons, never as a traceback.

When the session pauses for a tool approval, an approval panel shows each waiting call
with its arguments editable, beside Approve and Deny. Clicking a step in the timeline opens
it in the Inspector tab: what the model was sent and returned, its tokens, cost and
timing, and "Edit output and re-run from here" for each tool result.

Its lifecycle is public: ``follow()`` starts following, ``flush()`` redraws now what has
arrived, ``stop()`` stops following (the drawing stays), ``close()`` also closes the widget.

Front-end events (a click, a selection) may arrive on another thread: JupyterLab sends
comm messages to a kernel subshell when the kernel has them (ipykernel 7), and a subshell
runs its own event loop. The view hands such events over to the loop it lives on, where
its stream, its backend and the session's storage are.
"""

from __future__ import annotations

import asyncio
import json
import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import BackendError, HelixError
from .debug_panels import ApprovalPanel, StepInspector
from .render import render_diff, render_header, render_state, render_timeline
from .transcript import Transcript
from .transcript_feed import TranscriptFeed
from .tree_panel import TreePanel
from .view_state import ACTIONS, ViewState, allowed_actions

if TYPE_CHECKING:
    from ..client.backend import Backend
    from ..client.handle import AgentHandle

__all__ = ["AgentView"]

_LABELS = {
    "interrupt": ("Interrupt", "pause", "Stop softly at the next safe point (resumable)"),
    "resume": ("Resume", "play", "Go on from where it was interrupted"),
    "retry": ("Retry from checkpoint", "undo", "Fork from the checkpoint selected below, "
              "with the state as edited there"),
    "abort": ("Abort", "stop", "Stop now; the session cannot be resumed"),
}

KEEP_ITEMS = 1000
"""Transcript items the view's state keeps (the front end keeps fewer; older ones page in)."""
OPEN_CHUNKS = 2000
"""Chunks a view reads when it opens a session; older ones load on demand."""
_LISTED = 100
"""Checkpoints in the list (the newest); the tree reaches the rest, a page at a time."""
_NEWEST = 2**62
"""A ``before`` past every sequence: the newest page."""


def _label(checkpoint: dict[str, Any]) -> str:
    return f"step {checkpoint['step']} · branch {checkpoint['branch']} · {checkpoint['status']}"


class AgentView(widgets.VBox):
    """Stream, timeline, checkpoints and controls of one agent session."""

    def __init__(self, handle: AgentHandle, *, min_interval: float = 0.1) -> None:
        self.handle = handle
        """The session's handle; the controls replace it with the new run's handle."""
        self.state = ViewState(handle.agent_type or "", handle.session_id,
                               max_items=KEEP_ITEMS)
        self.min_interval = min_interval
        self.flushes = 0
        """How many times the view has redrawn (each redraw is a few comm messages)."""
        self._dirty: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._busy = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._follow_task: asyncio.Task[None] | None = None
        self._checkpoints: list[dict[str, Any]] = []
        self._selected_state: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the view lives on (where it was made, or first followed)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass

        self.header = widgets.HTML(render_header(self.state, self.backend.describe()))
        self.buttons: dict[str, widgets.Button] = {}
        for name in ACTIONS:
            label, icon, tip = _LABELS[name]
            button = widgets.Button(description=label, icon=icon, tooltip=tip, disabled=True,
                                    layout=widgets.Layout(width="auto"))
            button.on_click(lambda _b, name=name: self.press(name))
            self.buttons[name] = button
        self.message = widgets.HTML("")
        self.transcript = Transcript()
        """The live stream; it gets deltas through :attr:`feed`, never the whole transcript."""
        self.feed = TranscriptFeed(self.state, self.transcript, history=self._history_page,
                                   spawn=self._spawn, handed_over=self._handed_over)
        self.timeline_html = widgets.HTML(render_timeline(self.state))
        wide = {"description_width": "initial"}
        self.checkpoint_select = widgets.Select(options=[], rows=8, description="checkpoint",
                                                style=wide,
                                                layout=widgets.Layout(width="98%"))
        self.compare_select = widgets.Dropdown(options=[], description="compare with",
                                               style=wide,
                                               layout=widgets.Layout(width="98%"))
        self.checkpoint_state = widgets.HTML("")
        self.checkpoint_diff = widgets.HTML("")
        self.state_editor = widgets.Textarea(
            description="edit state", rows=6, layout=widgets.Layout(width="98%"),
            placeholder="the selected checkpoint's state; edit it, then Retry from checkpoint")
        self.checkpoint_select.add_class("hx-checkpoint-select")
        self.checkpoint_select.observe(self._on_select, names="value")
        self.compare_select.observe(self._on_select, names="value")
        self.tree_panel = TreePanel(lambda: self.handle, spawn=self._spawn,
                                    select=self.select_checkpoint, note=self.note,
                                    handed_over=self._handed_over)
        checkpoints = widgets.VBox([
            self.tree_panel.widget, self.checkpoint_select, self.compare_select,
            widgets.HTML("<b>state at the selected checkpoint</b>"), self.checkpoint_state,
            widgets.HTML("<b>diff</b>"), self.checkpoint_diff, self.state_editor])
        self.approvals = ApprovalPanel(self)
        self.inspector = StepInspector(self)
        timeline = widgets.VBox([self.timeline_html, self.inspector.picker])
        self.tabs = widgets.Tab(children=[self.transcript, timeline, checkpoints,
                                          self.inspector])
        for i, title in enumerate(("Stream", "Timeline", "Checkpoints", "Inspector")):
            self.tabs.set_title(i, title)
        super().__init__([self.header, widgets.HBox(list(self.buttons.values())), self.message,
                          self.approvals, self.tabs])
        self.add_class("helix-agent-view")

    @property
    def backend(self) -> Backend:
        return self.handle.backend

    @property
    def session_id(self) -> str:
        return self.handle.session_id

    def __repr__(self) -> str:
        return self.state.summary()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        # ipywidgets cuts text/plain at 110 characters, which would chop the summary in
        # the middle of its output field; the summary is already bounded, and it is what
        # nbval compares, so keep it whole.
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = repr(self)
        return bundle

    async def to_html(self, path: str | os.PathLike[str]) -> Path:
        """Write one self-contained HTML page of the session (header, timeline, branch tree
        and the whole transcript) to share: ``await view.to_html("run.html")``."""
        from .html_page import write_session_html

        return await write_session_html(self.handle, path)

    # -- following the stream --------------------------------------------------------------

    def follow(self, from_sequence: int = 0) -> asyncio.Task[None]:
        """Start (or restart) following the session's chunks on the running loop.

        A long session opens at its tail: at most :data:`OPEN_CHUNKS` chunks are read, and
        the older ones are paged in when the user asks ("earlier"). Follows across runs
        until :meth:`stop`; returns the task that follows."""
        if self._follow_task is not None:
            self._follow_task.cancel()
        self._follow_task = self._spawn(self._follow(from_sequence))
        return self._follow_task

    @property
    def following(self) -> bool:
        return self._follow_task is not None and not self._follow_task.done()

    async def _open_at(self, after: int) -> int:
        """Where to start reading: ``after``, or the tail of a long session (seeding the
        status the skipped chunks would have set)."""
        try:
            status = await self.handle.status()
        except BackendError:
            return after  # not started yet: the stream says the rest
        start = max(after, int(status.get("lastSequence") or 0) - OPEN_CHUNKS)
        if start > after and start > self.state.last_sequence:
            self.state.status = status.get("status", self.state.status)
            self.state.run_id = status.get("runId", self.state.run_id)
            self.state.chunks += start - max(after, self.state.last_sequence)
            self.state.last_sequence = start
            self.feed.start_at(start)
            self._dirty |= {"header", "buttons"}
        return start

    async def _follow(self, after: int) -> None:
        try:
            after = await self._open_at(after)
            async for chunk in self.backend.stream(self.session_id, after, follow=True):
                self.receive(chunk)
        except asyncio.CancelledError:
            raise
        except HelixError as exc:
            self.note(f"The stream stopped: {exc}", error=True)
        finally:
            self.flush()

    async def _history_page(self, after: int, limit: int) -> list[dict[str, Any]]:
        return (await self.handle.history(after, limit))["chunks"]

    def receive(self, chunk: dict[str, Any]) -> None:
        """Fold one chunk in and schedule a coalesced redraw."""
        if not self.state.agent_type:  # a handle made without the type: the chunks carry it
            self.state.agent_type = chunk.get("agentType") or ""
        self._dirty |= self.state.apply(chunk)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._last_flush + self.min_interval - loop.time())
            self._flush_handle = loop.call_later(delay, self.flush)

    @property
    def redraw_pending(self) -> bool:
        """Whether chunks were received that a scheduled redraw has yet to draw."""
        return self._flush_handle is not None

    def flush(self) -> None:
        """Redraw now whatever has changed since the last redraw (nothing if nothing has)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return
        self._last_flush = asyncio.get_running_loop().time()
        self.flushes += 1
        if "stream" in dirty:
            self.feed.flush()
        if dirty & {"header", "stream"}:
            self.header.value = render_header(self.state, self.backend.describe())
        if "timeline" in dirty:
            self.timeline_html.value = render_timeline(self.state)
            self.inspector.set_steps(sorted(s for s, m in self.state.steps.items()
                                            if m.status == "done"))
        if dirty & {"approvals", "buttons"}:
            self.approvals.refresh(self.state.pending)
        if "buttons" in dirty:
            self._update_buttons()
        if "checkpoints" in dirty:
            self._spawn(self.refresh_checkpoints())

    def stop(self) -> None:
        """Stop following and cancel the view's pending work; what is drawn stays."""
        if self._follow_task is not None:
            self._follow_task.cancel()
            self._follow_task = None
        for task in list(self._tasks):
            task.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def close(self) -> None:
        """Stop, and close the widget in the front end."""
        self.stop()
        super().close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- controls --------------------------------------------------------------------------

    def enabled_actions(self) -> set[str]:
        return set() if self._busy else allowed_actions(self.state.status)

    def _update_buttons(self) -> None:
        enabled = self.enabled_actions()
        for name, button in self.buttons.items():
            button.disabled = name not in enabled

    def note(self, text: str, *, error: bool = False) -> None:
        colour = "#c62828" if error else "#2e7d32"
        self.message.value = f'<span style="color:{colour}">{escape(text)}</span>'

    def _handed_over(self, fn: Any, *args: Any) -> bool:
        """If called away from the view's loop (a subshell thread), schedule ``fn(*args)``
        on that loop instead and return True; the caller then stops."""
        home = self._loop
        if home is None or home.is_closed():
            return False
        try:
            if asyncio.get_running_loop() is home:
                return False
        except RuntimeError:
            pass
        home.call_soon_threadsafe(fn, *args)
        return True

    def press(self, action: str) -> asyncio.Task[Any] | None:
        """What a button click does; returns the task so code and tests can await it
        (``None`` when refused, or when the click was handed over to the view's loop)."""
        if self._handed_over(self.press, action):
            return None
        if action not in self.enabled_actions():
            self.note(f"{_LABELS[action][0]} is not available while the session is "
                      f"{self.state.status}.", error=True)
            return None
        self._busy = True
        self._update_buttons()
        self.note(f"{_LABELS[action][0]}…")
        return self._spawn(self._act(action))

    async def _act(self, action: str) -> None:
        label = _LABELS[action][0]
        try:
            if action == "interrupt":
                status = await self.handle.interrupt("user pressed Interrupt")
                self.note(f"Interrupted at step {status.get('stepCount', '?')}.")
            elif action == "abort":
                await self.handle.abort("user pressed Abort")
                self.note("Aborted. The session cannot be resumed; retry or fork it instead.")
            elif action == "resume":
                self.handle = await self.handle.resume()
                self.note("Resumed.")
            elif action == "retry":
                await self._retry_from_checkpoint()
        except BackendError as exc:
            self.note(f"{label} was refused: {exc.message}", error=True)
        except HelixError as exc:
            self.note(f"{label} failed: {exc}", error=True)
        finally:
            self._busy = False
            self._update_buttons()

    async def _retry_from_checkpoint(self) -> None:
        checkpoint_id = self.checkpoint_select.value
        if not checkpoint_id:
            await self.refresh_checkpoints()
            checkpoint_id = self._checkpoints[-1]["checkpointId"] if self._checkpoints else None
        if not checkpoint_id:
            self.handle = await self.handle.retry()
            self.note("Retrying from the last checkpoint.")
            return
        modify = None
        edited = self.state_editor.value.strip()
        if edited:
            try:
                modify = json.loads(edited)
            except ValueError as exc:
                self.note(f"The edited state is not valid JSON ({exc}); fix it or clear the "
                          "editor.", error=True)
                return
            if modify == self._selected_state:
                modify = None
        self.handle = await self.handle.resume(mode="from_checkpoint",
                                               checkpoint_id=checkpoint_id, modify_state=modify)
        step = next((c["step"] for c in self._checkpoints
                     if c["checkpointId"] == checkpoint_id), "?")
        self.note(f"Forked a new branch from step {step}"
                  + (" with the edited state." if modify is not None else "."))

    # -- approvals and the step inspector ---------------------------------------------------

    def decide(self, tool_call_id: str, action: str) -> asyncio.Task[Any] | None:
        """Approve (with the arguments as edited in the panel) or deny a waiting call;
        returns the task, as :meth:`press` does."""
        if self._handed_over(self.decide, tool_call_id, action):
            return None
        ok, detail = self.approvals.decision(tool_call_id, action)
        if not ok:
            self.note(detail, error=True)
            return None
        return self._spawn(self._decide(tool_call_id, action, detail))

    async def _decide(self, tool_call_id: str, action: str, options: dict[str, Any]) -> None:
        name = self.state.pending.get(tool_call_id, {}).get("toolName", tool_call_id)
        try:
            if action == "deny":
                self.handle = await self.handle.deny(options["message"], tool_call_id)
                self.note(f"Denied {name}; the model is told why.")
            else:
                self.handle = await self.handle.approve(tool_call_id, options.get("input"))
                edited = " with the edited arguments" if "input" in options else ""
                self.note(f"Approved {name}{edited}.")
        except BackendError as exc:
            self.note(f"The decision was refused: {exc.message}", error=True)
        except HelixError as exc:
            self.note(f"The decision failed: {exc}", error=True)

    def open_step(self, step: int) -> asyncio.Task[Any] | None:
        """Show ``step`` in the Inspector tab (what clicking it in the timeline does)."""
        if self._handed_over(self.open_step, step):
            return None
        return self._spawn(self._open_step(step))

    async def _open_step(self, step: int) -> None:
        try:
            view = await self.handle.step(step)
        except BackendError as exc:
            self.note(f"Could not open step {step}: {exc.message}", error=True)
            return
        self.inspector.show(view)
        self.tabs.selected_index = 3

    def rerun_with_output(self, tool_call_id: str, text: str) -> asyncio.Task[Any] | None:
        """Fork at the shown step with this tool result replaced, and re-run what follows."""
        if self._handed_over(self.rerun_with_output, tool_call_id, text):
            return None
        shown = self.inspector.shown
        if shown is None:
            return None
        try:
            output: Any = json.loads(text)
        except ValueError:
            output = text  # plain text is a fine tool output
        return self._spawn(self._rerun(shown, tool_call_id, output))

    async def _rerun(self, shown: dict[str, Any], tool_call_id: str, output: Any) -> None:
        try:
            self.handle = await self.handle.resume(
                mode="from_checkpoint", checkpoint_id=shown["checkpointId"],
                edit_tool_results={tool_call_id: output})
        except BackendError as exc:
            self.note(f"Re-run was refused: {exc.message}", error=True)
            return
        self.note(f"Re-running from step {shown['step'] + 1} with the edited output, on a new "
                  "branch.")

    # -- checkpoint browser ----------------------------------------------------------------

    async def refresh_checkpoints(self) -> None:
        """Reload the tree and the newest checkpoints (a bounded page, however long the
        session; older ones are reached through the tree)."""
        try:
            page = await self.handle.checkpoints_page(before=_NEWEST, limit=_LISTED)
        except BackendError:
            return
        self._checkpoints = page["checkpoints"]
        options = [(_label(c), c["checkpointId"]) for c in self._checkpoints]
        selected = self.checkpoint_select.value
        if selected and selected not in {value for _, value in options}:
            options.append(next(o for o in self.checkpoint_select.options if o[1] == selected))
        self.checkpoint_select.options = options
        self.compare_select.options = [("latest", ""), *options]
        if selected in {value for _, value in options}:
            self.checkpoint_select.value = selected
        await self.tree_panel.refresh()

    def select_checkpoint(self, checkpoint_id: str) -> None:
        """Select a checkpoint (a tree node or a search hit): the view shows its state,
        and Retry from checkpoint forks from it."""
        if self._handed_over(self.select_checkpoint, checkpoint_id):
            return
        options = list(self.checkpoint_select.options)
        if checkpoint_id not in {value for _, value in options}:
            known = {c["checkpointId"]: c for c in self.tree_panel.tree.page.get("items", [])}
            found = known.get(checkpoint_id)
            label = (_label({**found, "branch": self.tree_panel.tree.page["branch"]})
                     if found else f"checkpoint {checkpoint_id}")
            self.checkpoint_select.options = [*options, (label, checkpoint_id)]
        self.checkpoint_select.value = checkpoint_id

    def _on_select(self, change: dict[str, Any]) -> None:
        if self._handed_over(self._on_select, change):
            return
        self.tree_panel.show_selected(self.checkpoint_select.value or "")
        if self.checkpoint_select.value:
            self._spawn(self.show_checkpoint(self.checkpoint_select.value,
                                             self.compare_select.value or None))

    async def show_checkpoint(self, checkpoint_id: str, compare_id: str | None = None) -> None:
        """Show a checkpoint's state and its diff against another (default: the latest)."""
        try:
            selected = await self.handle.checkpoint(checkpoint_id)
            if compare_id:
                other = await self.handle.checkpoint(compare_id)
                other_label = f"step {other['step']} (branch {other['branch']})"
            else:
                other = {"state": await self.handle.get_state()}
                other_label = "latest"
        except BackendError as exc:
            self.note(f"Could not load the checkpoint: {exc.message}", error=True)
            return
        self._selected_state = selected["state"]
        self.checkpoint_state.value = render_state(selected["state"])
        self.checkpoint_diff.value = await self._compare(checkpoint_id, compare_id) + render_diff(
            selected["state"], other["state"],
            f"step {selected['step']} (branch {selected['branch']})", other_label)
        self.state_editor.value = json.dumps(selected["state"], indent=1)

    async def _compare(self, checkpoint_id: str, compare_id: str | None) -> str:
        """"Compare with": where the two runs part and why (:func:`diff_runs`), as HTML."""
        from ..client.diff import diff_runs

        try:
            diff = await diff_runs((self.handle, checkpoint_id),
                                   (self.handle, compare_id) if compare_id else self.handle)
        except HelixError as exc:
            return f'<div class="hx-error">{escape(str(exc))}</div>'
        return f"<pre>{escape(str(diff))}</pre>"
