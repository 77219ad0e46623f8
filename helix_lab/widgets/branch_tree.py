"""``BranchTree``: a session's branches drawn as a tree, as an anywidget.

The class is only its synced traits; the drawing is ``branch_tree.js`` and
``branch_tree.css`` beside it. What travels to the front end is bounded whatever the
session's length: one row per branch (:attr:`BranchTree.branches`, the rows of
``GET /branches``) and one page of checkpoints of the branch that is unfolded
(:attr:`BranchTree.page`). A linear run of 10,000 checkpoints is one row, folded to its
head, until the user unfolds it.

The front end sets :attr:`BranchTree.selected` when a node is clicked, and asks for
another page with a ``{"type": "page", "branch": B, "after"|"before": SEQUENCE}`` custom
message; whoever drives the tree (``TreePanel``) answers by setting ``page``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["PAGE_SIZE", "BranchTree", "PageRequest"]

PAGE_SIZE = 30
"""Checkpoints drawn at once in an unfolded branch."""

PageRequest = dict[str, int]
"""``{"branch": B, "after": S}`` or ``{"branch": B, "before": S}`` (checkpoint sequences)."""

_BRANCH_KEYS = frozenset({"branch", "parentBranch", "forkCheckpointId", "forkStep",
                          "headCheckpointId", "status"})
_PAGE_KEYS = frozenset({"branch", "items", "hasEarlier", "hasMore"})


class BranchTree(anywidget.AnyWidget):
    """The branch tree of one session; click a node to select its checkpoint."""

    _esm = Path(__file__).with_name("branch_tree.js")
    _css = Path(__file__).with_name("branch_tree.css")

    branches = traitlets.List(traitlets.Dict(), help="rows of GET /branches").tag(sync=True)
    current_branch = traitlets.Int(0, help="the branch the session is on").tag(sync=True)
    page = traitlets.Dict(help="the unfolded branch: {branch, items, hasEarlier, hasMore}; "
                          "items are {checkpointId, step, status, sequence}").tag(sync=True)
    selected = traitlets.Unicode("", help="the selected checkpoint id").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._page_handlers: list[Callable[[PageRequest], None]] = []
        self.on_msg(self._on_front_end_message)

    def __repr__(self) -> str:
        return (f"BranchTree(branches={len(self.branches)}, current={self.current_branch}, "
                f"selected={self.selected!r})")

    @traitlets.validate("branches")
    def _check_branches(self, proposal: dict[str, Any]) -> list[dict[str, Any]]:
        for row in proposal["value"]:
            missing = _BRANCH_KEYS - set(row)
            if missing:
                raise traitlets.TraitError(f"a branch row lacks {sorted(missing)}: {row!r}")
        return proposal["value"]

    @traitlets.validate("page")
    def _check_page(self, proposal: dict[str, Any]) -> dict[str, Any]:
        page = proposal["value"]
        if page and set(page) != _PAGE_KEYS:
            raise traitlets.TraitError(f"a page has the keys {sorted(_PAGE_KEYS)}, got "
                                       f"{sorted(page)}")
        if page and len(page["items"]) > PAGE_SIZE:
            raise traitlets.TraitError(f"a page holds at most {PAGE_SIZE} checkpoints, got "
                                       f"{len(page['items'])}")
        return page

    def on_page(self, handler: Callable[[PageRequest], None]) -> None:
        """Call ``handler(request)`` when the front end asks for a page of a branch."""
        self._page_handlers.append(handler)

    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "page":
            return
        request = {k: int(content[k]) for k in ("branch", "after", "before")
                   if isinstance(content.get(k), int)}
        if "branch" not in request:
            return
        for handler in self._page_handlers:
            handler(request)
