"""One self-contained HTML page of a session, to send to someone who has no notebook.

``await view.to_html("run.html")`` (or :func:`write_session_html`) writes the header, the
whole transcript, the step timeline and the branch tree, with the view's own styles
inlined: no script, no external file, nothing to install. The page is drawn from the
client API (``/status``, ``/branches``, ``/history``), so any backend can make one.
"""

from __future__ import annotations

import asyncio
import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .render import STATUS_COLOURS, STYLE, render_header, render_item, render_timeline
from .view_state import ViewState

if TYPE_CHECKING:
    from ..client.handle import AgentHandle

__all__ = ["session_html", "write_session_html"]

_PAGE_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:980px;color:#212121}
h2{font-size:16px;margin:20px 0 6px}
.hx-transcript{font-family:monospace;font-size:12px;border:1px solid #ddd;border-radius:4px;
 padding:4px 8px}
.hx-stepline{color:#757575;border-top:1px dashed #ddd;margin-top:6px;padding-top:2px}
.hx-tree ul{list-style:none;padding-left:18px;margin:0}
.hx-tree li{margin:2px 0}.hx-head{font-weight:bold}
</style>"""


def _tree(rows: list[dict[str, Any]], parent: int | None = None) -> str:
    """The rows of ``GET /branches`` as nested lists, each branch under its parent."""
    children = [r for r in rows if r["parentBranch"] == parent]
    if not children:
        return ""
    items = []
    for row in children:
        colour = STATUS_COLOURS.get(row["status"], "#757575")
        fork = ("" if row["forkStep"] is None
                else f" · forked at step {row['forkStep']} of branch {row['parentBranch']}")
        mark = ' class="hx-head"' if row.get("current") else ""
        items.append(
            f"<li{mark}>branch {row['branch']}{' (current)' if mark else ''}{fork} · "
            f"{row['checkpointCount']} checkpoints, head at step {row['headStep']} · "
            f'<span class="hx-badge" style="background:{colour}">{escape(row["status"])}'
            f"</span>{_tree(rows, row['branch'])}</li>")
    return "<ul>" + "".join(items) + "</ul>"


async def session_html(handle: AgentHandle, page: int = 1000) -> str:
    """The page of ``handle``'s session, as a string."""
    status = await handle.status()
    state = ViewState(status.get("agentType") or handle.agent_type or "", handle.session_id)
    async for chunk in handle.history_chunks(page=page):
        state.apply(chunk)
    branches = await handle.branches() if status.get("sessionId") else []
    items, step = [], None
    for item in state.items:
        if item.step != step:
            step = item.step
            items.append(f'<div class="hx-stepline">step {step}</div>')
        items.append(render_item(item))
    title = f"helix_lab · {state.agent_type} · session {handle.session_id}"
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}"
            f"</title>{STYLE}{_PAGE_STYLE}</head><body>"
            f"<div>{render_header(state, handle.backend.describe())}</div>"
            f"<h2>Timeline</h2>{render_timeline(state)}"
            f"<h2>Branches</h2><div class=\"hx-tree\">"
            f"{_tree(branches)}</div>"
            f"<h2>Transcript</h2><div class=\"hx-transcript\">{''.join(items)}</div>"
            "</body></html>\n")


async def write_session_html(handle: AgentHandle, path: str | os.PathLike[str]) -> Path:
    """Write :func:`session_html` to ``path``; returns the path."""
    target = Path(path)
    text = await session_html(handle)
    await asyncio.to_thread(target.write_text, text, "utf-8")
    return target
