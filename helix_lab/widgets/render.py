"""HTML for the agent view: the transcript, the step timeline, the header, state diffs.

Pure functions of a :class:`~helix_lab.widgets.view_state.ViewState` (or of two states),
so the widget stays thin and the drawing can be tested without a front end. Everything
user- or model-supplied is escaped.
"""

from __future__ import annotations

import difflib
import json
from html import escape
from pathlib import Path
from typing import Any

from .view_state import Item, ViewState

__all__ = ["TIMELINE_STEPS", "render_diff", "render_header", "render_item", "render_state",
           "render_step", "render_stream", "render_timeline"]

STATUS_COLOURS = {
    "starting": "#9e9e9e", "running": "#1e88e5", "done": "#43a047", "completed": "#43a047",
    "interrupted": "#fb8c00", "paused": "#fb8c00", "failed": "#e53935", "idle": "#9e9e9e",
}

TIMELINE_STEPS = 200
"""Steps drawn in the timeline: the newest ones."""

STYLE = f"<style>{(Path(__file__).with_name('view.css')).read_text()}</style>"
"""The view's CSS (``view.css``, shared with the transcript anywidget), for HTML widgets."""


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _json(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False,
                                                           default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit} more characters)"
    return escape(text)


def render_item(item: Item) -> str:
    """One transcript item as HTML, one element (the transcript widget and the page
    export draw every item with it)."""
    if item.kind == "text":
        return f'<div class="hx-text">{escape(item.text)}</div>'
    if item.kind == "thinking":
        return (f'<details class="hx-thinking"><summary>thinking (step {item.step})</summary>'
                f"<div>{escape(item.text)}</div></details>")
    if item.kind == "tool":
        parts = [f'<div class="hx-tool">tool <b>{escape(item.text)}</b>',
                 f"<pre>in: {_json(item.data.get('input'))}</pre>"]
        if "output" in item.data:
            parts.append(f"<pre>out: {_json(item.data['output'])}</pre>")
        elif "error" in item.data:
            parts.append(f'<pre class="hx-error">error: {_json(item.data["error"])}</pre>')
        else:
            parts.append("<pre>…running</pre>")
        return "".join(parts) + "</div>"
    if item.kind == "approval":
        return (f'<div class="hx-tool" style="border-color:#fb8c00"><b>{escape(item.text)}'
                f"</b><pre>in: {_json(item.data.get('input'))}</pre></div>")
    if item.kind == "error":
        return f'<div class="hx-error">✖ {escape(item.text)}</div>'
    if item.kind == "retry":
        return f'<div class="hx-retry">↻ {escape(item.text)}</div>'
    if item.kind == "custom":
        return (f'<div class="hx-info">◆ {escape(item.text)}: '
                f"{_json(item.data.get('data'), 300)}</div>")
    return f'<div class="hx-info">{escape(item.text)}</div>'




def render_stream(state: ViewState) -> str:
    hidden, items = state.visible_items()
    head = (f'<div class="hx-info">… {hidden} earlier items not drawn; '
            "use handle.history() to page through them</div>" if hidden else "")
    body = "".join(render_item(i) for i in items) or '<div class="hx-info">waiting for chunks…</div>'
    # Every redraw replaces the scroll box; column-reverse makes a new box start scrolled
    # to its end, so the newest chunks stay in sight instead of jumping back to the top.
    return f'{STYLE}<div class="hx-stream"><div>{head}{body}</div></div>'


def render_header(state: ViewState, backend: str) -> str:
    colour = STATUS_COLOURS.get(state.status, "#757575")
    tokens = state.input_tokens + state.output_tokens
    return (f"<b>{escape(state.agent_type)}</b> · session <code>{escape(state.session_id)}"
            f'</code> · <span class="hx-badge" style="background:{colour}">{state.status}</span>'
            f" · {_count(state.step_count, 'step')} · {tokens:,} tokens"
            f" · {escape(state.cost_text())}"
            f" · {_count(state.chunks, 'chunk')}"
            f" · {escape(backend)}")


def render_timeline(state: ViewState) -> str:
    if not state.steps:
        return '<div class="hx-info">no steps yet</div>'
    marks = []
    steps = sorted(state.steps)
    if len(steps) > TIMELINE_STEPS:  # a redraw costs the same at step 10,000 as at step 10
        marks.append(f'<span class="hx-info">… {len(steps) - TIMELINE_STEPS:,} earlier steps '
                     "</span>")
        steps = steps[-TIMELINE_STEPS:]
    for step in steps:
        mark = state.steps[step]
        seconds = f"{mark.seconds:.2f} s" if mark.seconds is not None else "…"
        cost = f", ${mark.cost_usd:.4f}" if mark.cost_usd is not None else ""
        tip = (f"step {step}: {mark.status}, {seconds}, {mark.input_tokens} in / "
               f"{mark.output_tokens} out tokens{cost}, {mark.tools} tool calls")
        if mark.durable:
            tip += "; " + ", ".join(f"{name}: {how}" + (f" ({n} attempts)" if n > 1 else "")
                                    for name, (how, n) in mark.durable.items())
        marks.append(f'<span class="hx-step" title="{escape(tip)}" style="background:'
                     f'{STATUS_COLOURS.get(mark.status, "#757575")}">{step}'
                     f'{_durable_badge(mark)}</span>')
    last = state.steps[max(state.steps)]
    detail = (f"last step {last.step}: {last.status}"
              + (f", {last.seconds:.2f} s" if last.seconds is not None else "")
              + f", {last.input_tokens + last.output_tokens} tokens")
    return f'{STYLE}<div>{"".join(marks)}</div><div class="hx-info">{escape(detail)}</div>'


def _durable_badge(mark: Any) -> str:
    """↺ when the step was replayed from storage, "xN" when one of its parts took N tries."""
    hows = [how for how, _ in mark.durable.values()]
    badge = "↺" if hows and all(h == "memoized" for h in hows) else ""
    retries = max((n for _, n in mark.durable.values()), default=1)
    return badge + (f"x{retries}" if retries > 1 else "")


def render_state(state: Any) -> str:
    return f"<pre>{_json(state, 6000)}</pre>"


def render_diff(old: Any, new: Any, old_label: str, new_label: str) -> str:
    """A unified diff of two states as pretty JSON."""
    a = json.dumps(old, indent=1, sort_keys=True, default=str).splitlines()
    b = json.dumps(new, indent=1, sort_keys=True, default=str).splitlines()
    lines = list(difflib.unified_diff(a, b, old_label, new_label, lineterm="", n=2))
    if not lines:
        return '<div class="hx-info">no difference in state</div>'
    out = []
    for line in lines:
        colour = "#2e7d32" if line.startswith("+") else "#c62828" if line.startswith("-") else ""
        style = f' style="color:{colour}"' if colour else ""
        out.append(f"<span{style}>{escape(line)}</span>")
    return "<pre>" + "\n".join(out) + "</pre>"


def _message(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        body = escape(content)
    else:
        parts = []
        for block in content if isinstance(content, list) else []:
            kind = block.get("type")
            if kind == "text":
                parts.append(escape(block.get("text", "")))
            elif kind == "thinking":
                parts.append(f"<i>thinking: {escape(block.get('thinking', ''))}</i>")
            elif kind == "tool_use":
                parts.append(f"→ {escape(str(block.get('name')))}({_json(block.get('input'), 400)})")
            elif kind == "tool_result":
                flag = " (error)" if block.get("is_error") else ""
                parts.append(f"← {escape(str(block.get('tool_use_id')))}{flag}: "
                             f"{_json(block.get('content'), 400)}")
        body = "<br>".join(parts)
    return f'<div class="hx-text"><b>{escape(str(message.get("role")))}</b>: {body}</div>'


def render_step(view: dict[str, Any]) -> str:
    """A ``GET /steps/{step}`` body: what the model saw, what it returned, what it cost."""
    request, response, usage, timing = (view["request"], view["response"], view["usage"],
                                        view["timing"])
    cost = usage.get("costUsd")
    money = f"${cost:.6f}" if isinstance(cost, int | float) else "unpriced"
    first = timing.get("firstTokenMs")
    head = (f"<b>step {view['step']}</b> · branch {view['branch']} · "
            f"{escape(str(view.get('model') or ''))} · {usage['inputTokens']:,} in / "
            f"{usage['outputTokens']:,} out tokens · {money} · first token "
            f"{'n/a' if first is None else f'{first} ms'} · {timing['durationMs']} ms")
    omitted = request.get("messagesOmitted", 0)
    sent = "".join(_message(m) for m in request["messages"])
    if omitted:
        sent = f'<div class="hx-info">… {omitted} earlier messages not shown</div>' + sent
    tools = ", ".join(escape(t["name"]) for t in request["tools"]) or "none"
    calls = "".join(f"<pre>→ {escape(str(c['toolName']))} {_json(c['input'], 800)}</pre>"
                    for c in response["toolCalls"])
    results = "".join(
        f"<pre>{'✖' if r['isError'] else '←'} {escape(str(r['toolCallId']))}: "
        f"{_json(r['output'], 800)}</pre>" for r in view["toolResults"])
    approvals = "".join(
        f"<pre>{escape(a['action'])} {escape(a['toolName'])}: model asked "
        f"{_json(a['modelInput'], 300)}</pre>" for a in view.get("approvals", []))
    thinking = (f"<details class='hx-thinking'><summary>thinking</summary><div>"
                f"{escape(response['thinking'])}</div></details>" if response["thinking"] else "")
    return (f"{STYLE}<div>{head}</div>"
            f"<details><summary>system prompt and {len(request['tools'])} tools ({tools})"
            f"</summary><pre>{escape(request['system'])}</pre></details>"
            f"<b>sent ({request['messageCount']} messages)</b>"
            f'<div class="hx-stream" style="max-height:240px">{sent}</div>'
            f"<b>returned</b>{thinking}<div class='hx-text'>{escape(response['text'])}</div>"
            f"{calls}{approvals}<b>tool results</b>{results or '<div class=hx-info>none</div>'}")
