"""The first place where two JSON documents differ, named as a path a person can read.

Cassettes use it to say which field of a request the recording never saw, and run diffs
use it to say where two steps part. A path looks like ``messages[3].content[0].text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "Difference", "first_difference", "preview"]


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


MISSING: Any = _Missing()
"""Stands for a key or list item that one side does not have."""


@dataclass(frozen=True)
class Difference:
    """Where two documents first differ, and the two values found there."""

    path: str
    """``""`` for the documents themselves, else e.g. ``messages[3].content[0].text``."""
    left: Any
    right: Any

    def describe(self, left_name: str = "recorded", right_name: str = "got",
                 width: int = 80) -> str:
        where = self.path or "the whole document"
        return (f"{where}: {left_name} {preview(self.left, width)}, "
                f"{right_name} {preview(self.right, width)}")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def first_difference(left: Any, right: Any, path: str = "") -> Difference | None:
    """The first differing field, depth first, keys in ``left``'s order; ``None`` if equal.

    ``1`` and ``1.0`` are equal (JSON does not tell them apart); ``True`` and ``1`` are not.
    """
    if isinstance(left, dict) and isinstance(right, dict):
        for key in [*left, *(k for k in right if k not in left)]:
            found = first_difference(left.get(key, MISSING), right.get(key, MISSING),
                                     _join(path, key))
            if found is not None:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        for index in range(max(len(left), len(right))):
            found = first_difference(left[index] if index < len(left) else MISSING,
                                     right[index] if index < len(right) else MISSING,
                                     _join(path, index))
            if found is not None:
                return found
        return None
    if type(left) is bool or type(right) is bool:
        same = type(left) is type(right) and left == right
    else:
        same = type(left) is type(right) or (
            isinstance(left, int | float) and isinstance(right, int | float))
        same = same and left == right
    return None if same else Difference(path, left, right)


def preview(value: Any, width: int = 80) -> str:
    """A one-line ``repr`` cut to ``width`` characters."""
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"
