"""``TreePanel``: the branch tree and the search box of an ``AgentView``, and what feeds them.

It asks the session for its branches (``GET /branches``) and for one page of checkpoints at
a time (``GET /checkpoints?branch=&after=&before=&limit=``), so what it holds and sends is
bounded however long the session is. A click on a tree node, or on a search hit, calls
``select(checkpoint_id)``: the view then shows that checkpoint, and Retry forks from it.

A search hit jumps to its step: the panel selects the checkpoint that ended the step (the
first one stored after the hit) and shows the chunks from the hit on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import BackendError
from .branch_tree import PAGE_SIZE, BranchTree, PageRequest
from .render import render_stream
from .view_state import ViewState

if TYPE_CHECKING:
    from ..client.handle import AgentHandle

__all__ = ["CONTEXT_CHUNKS", "SEARCH_LIMIT", "TreePanel"]

SEARCH_LIMIT = 20
CONTEXT_CHUNKS = 60
"""Chunks shown from a search hit on."""

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class TreePanel:
    """The tree, the search box and the hit list, driven through a session's handle."""

    def __init__(self, handle: Callable[[], AgentHandle], *, spawn: Spawn,
                 select: Callable[[str], None], note: Callable[..., None],
                 handed_over: Callable[..., bool]) -> None:
        self._handle = handle
        self._spawn = spawn
        self._select = select
        self._note = note
        self._handed_over = handed_over
        self.hits: list[dict[str, Any]] = []
        self.tree = BranchTree()
        self.tree.on_page(self._on_page)
        self.tree.observe(self._on_tree_select, names="selected")
        self.search_box = widgets.Text(placeholder="search text, thinking and tools (FTS5)",
                                       continuous_update=False,
                                       layout=widgets.Layout(width="60%"))
        self.search_box.observe(self._on_search, names="value")
        self.hit_select = widgets.Select(options=[], rows=6, layout=widgets.Layout(width="98%"))
        self.hit_select.add_class("hx-search-hits")
        self.hit_select.observe(self._on_hit, names="value")
        self.context = widgets.HTML("")
        self.widget = widgets.VBox([
            widgets.HTML("<b>branches</b>"), self.tree,
            widgets.HBox([widgets.HTML("<b>search</b>&nbsp;"), self.search_box]),
            self.hit_select, self.context])
        self.widget.add_class("hx-tree-panel")

    # -- the tree --------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload the branches, and the newest page of the unfolded branch (the current one
        unless the user unfolded another), unless the user paged back from it."""
        try:
            branches = await self._handle().branches()
        except BackendError:
            return  # no session yet, or a backend that is down: the view says so elsewhere
        rows = {b["branch"]: b for b in branches}
        current = next((b["branch"] for b in branches if b.get("current")), 0)
        self.tree.branches = branches
        self.tree.current_branch = current
        if self.tree.page.get("hasMore"):
            return  # the user is reading an older page: leave it where it is
        head = rows.get(self.tree.page.get("branch", current))
        if head is not None:
            await self.load_page({"branch": head["branch"], "before": head["headSequence"] + 1})

    async def load_page(self, request: PageRequest) -> None:
        """Fetch a page of one branch and send it to the tree."""
        try:
            page = await self._handle().checkpoints_page(limit=PAGE_SIZE, **request)
        except BackendError as exc:
            self._note(f"Could not load the checkpoints: {exc.message}", error=True)
            return
        items = [{"checkpointId": c["checkpointId"], "step": c["step"], "status": c["status"],
                  "sequence": c["sequence"]} for c in page["checkpoints"]]
        backwards = "before" in request
        self.tree.page = {
            "branch": request["branch"], "items": items,
            # Paging back, hasMore means older ones; forwards, it means newer ones.
            "hasEarlier": bool(page["hasMore"]) if backwards else request.get("after", 0) > 0,
            "hasMore": (not backwards and bool(page["hasMore"])) or (
                backwards and bool(items) and self._has_later(request["branch"], items[-1])),
        }

    def _has_later(self, branch: int, last: dict[str, Any]) -> bool:
        row = next((b for b in self.tree.branches if b["branch"] == branch), None)
        return row is not None and row["headSequence"] > last["sequence"]

    def _on_page(self, request: PageRequest) -> None:
        if self._handed_over(self._on_page, request):
            return
        self._spawn(self.load_page(request))

    def _on_tree_select(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._select(change["new"])

    def show_selected(self, checkpoint_id: str) -> None:
        """Mark a checkpoint chosen elsewhere (the checkpoint list) in the tree."""
        self.tree.selected = checkpoint_id or ""

    # -- search ----------------------------------------------------------------------------

    def _on_search(self, change: dict[str, Any]) -> None:
        if self._handed_over(self._on_search, change):
            return
        self._spawn(self.search(change["new"]))

    async def search(self, query: str) -> None:
        """Run a search and list its hits; a query FTS5 cannot parse is a message."""
        query = query.strip()
        self.hits = []
        self.hit_select.options = []
        self.context.value = ""
        if not query:
            return
        try:
            self.hits = await self._handle().search(query, SEARCH_LIMIT)
        except BackendError as exc:
            self._note(f"Search failed: {exc.message}", error=True)
            return
        self.hit_select.options = [
            (f"step {h['step']} · {h['type']} · {' '.join(h['snippet'].split())[:90]}", i)
            for i, h in enumerate(self.hits)]
        self._note(f"{len(self.hits)} hit{'s' * (len(self.hits) != 1)} for {query!r}"
                   + (" (the best first)." if self.hits else "."))

    def _on_hit(self, change: dict[str, Any]) -> None:
        if self._handed_over(self._on_hit, change):
            return
        if change["new"] is not None and 0 <= change["new"] < len(self.hits):
            self._spawn(self.jump(self.hits[change["new"]]))

    async def jump(self, hit: dict[str, Any]) -> None:
        """Show the chunks from a hit on, and select the checkpoint that ended its step."""
        handle = self._handle()
        try:
            history = await handle.history(hit["sequence"] - 1, CONTEXT_CHUNKS)
            after = await handle.checkpoints_page(after=hit["sequence"], limit=1)
        except BackendError as exc:
            self._note(f"Could not load step {hit['step']}: {exc.message}", error=True)
            return
        scratch = ViewState(handle.agent_type or "", handle.session_id)
        for chunk in history["chunks"]:
            scratch.apply(chunk)
        self.context.value = (f"<div><b>step {hit['step']}</b>, from chunk "
                              f"{hit['sequence']}</div>" + render_stream(scratch))
        if after["checkpoints"]:
            checkpoint = after["checkpoints"][0]
            self.tree.selected = checkpoint["checkpointId"]
            self._note(f"Step {hit['step']}: selected its checkpoint on branch "
                       f"{checkpoint['branch']}.")
        else:
            self._note(f"Step {hit['step']} has no checkpoint yet.")
