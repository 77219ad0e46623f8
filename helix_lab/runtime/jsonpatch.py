"""RFC 6902 JSON Patch: apply a patch, and compute a small one between two documents.

Checkpoints store the state as a patch against their parent, so storage grows with what
changed, not with the size of the state. The runtime must also run inside a Python
Worker, where only the standard library and pydantic are available, which is why this is
a small module of its own rather than a dependency. Tests check it against the
``jsonpatch`` package as an oracle.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import JsonPatchError

__all__ = ["JsonPatchError", "apply_patch", "make_patch"]

Json = Any


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    # RFC 6901: "~" only starts "~0" or "~1"; anything else is a malformed pointer.
    if "~" in token.replace("~0", "").replace("~1", ""):
        raise JsonPatchError(f"{token!r} has a '~' that is not an escape (~0 or ~1)")
    return token.replace("~1", "/").replace("~0", "~")


def _split(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise JsonPatchError(f"JSON pointer {pointer!r} must start with '/'")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise JsonPatchError(f"{token!r} is not a valid array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise JsonPatchError(f"array index {index} is out of range (length {len(container)})")
    return index


def _parent(doc: Json, tokens: list[str]) -> Json:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise JsonPatchError(f"path segment {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise JsonPatchError(f"cannot descend into a {type(node).__name__} at {token!r}")
    return node


def _slot(doc: Json, tokens: list[str], pointer: str, *,
          adding: bool) -> tuple[dict[str, Any] | list[Any], Any]:
    """The container that holds the target of ``pointer`` (``tokens``, not empty), and the
    target's key in it: an index in a list. Only ``adding`` may name a key that is not
    there yet, or ``-``, the end of a list."""
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if not adding and last not in parent:
            raise JsonPatchError(f"path {pointer!r} does not exist")
        return parent, last
    if isinstance(parent, list):
        return parent, _index(parent, last, allow_end=adding)
    where = f"cannot add at {pointer!r}" if adding else f"path {pointer!r} does not exist"
    raise JsonPatchError(f"{where}: a {type(parent).__name__} holds nothing")


def _get(doc: Json, pointer: str) -> Json:
    tokens = _split(pointer)
    if not tokens:
        return doc
    container, key = _slot(doc, tokens, pointer, adding=False)
    return container[key]


def _add(doc: Json, pointer: str, value: Json) -> Json:
    tokens = _split(pointer)
    if not tokens:
        return value
    container, key = _slot(doc, tokens, pointer, adding=True)
    if isinstance(container, list):
        container.insert(key, value)
    else:
        container[key] = value
    return doc


def _remove(doc: Json, pointer: str) -> Json:
    tokens = _split(pointer)
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    container, key = _slot(doc, tokens, pointer, adding=False)
    del container[key]
    return doc


def apply_patch(doc: Json, patch: list[dict[str, Any]]) -> Json:
    """Return ``doc`` with ``patch`` applied. ``doc`` itself is left untouched."""
    if not isinstance(patch, list):
        raise JsonPatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in patch:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise JsonPatchError(f"operation {op!r} needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if not isinstance(path, str):
            raise JsonPatchError(f"'path' must be a string, got {path!r}")
        if kind in ("add", "replace", "test") and "value" not in op:
            raise JsonPatchError(f"{kind!r} operation at {path!r} needs a 'value'")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result = _remove(result, path)
        elif kind == "replace":
            _get(result, path)
            if path == "":
                result = copy.deepcopy(op["value"])
            else:
                result = _add(_remove(result, path), path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise JsonPatchError(f"{kind!r} operation needs a string 'from'")
            value = copy.deepcopy(_get(result, source))
            if kind == "move":
                if path.startswith(source + "/"):
                    raise JsonPatchError("cannot move a value into one of its own children")
                result = _remove(result, source)
            result = _add(result, path, value)
        elif kind == "test":
            if _get(result, path) != op["value"]:
                raise JsonPatchError(f"test failed at {path!r}")
        else:
            raise JsonPatchError(f"unknown operation {kind!r}")
    return result


def make_patch(old: Json, new: Json, path: str = "") -> list[dict[str, Any]]:
    """A patch that turns ``old`` into ``new``.

    It recurses into objects and into lists of equal length, and turns a list that only
    grew at the end into ``add`` operations, the common case of an append-only state.
    """
    if type(old) is not type(new):
        return [{"op": "replace", "path": path, "value": new}]
    if isinstance(old, dict):
        ops: list[dict[str, Any]] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in new.items():
            child = f"{path}/{_escape(key)}"
            if key not in old:
                ops.append({"op": "add", "path": child, "value": value})
            else:
                ops.extend(make_patch(old[key], value, child))
        return ops
    if isinstance(old, list):
        # Compared with make_patch, not ==, which takes 1, 1.0 and True for the same value.
        if len(new) >= len(old) and not any(
                make_patch(a, b) for a, b in zip(old, new, strict=False)):
            return [{"op": "add", "path": f"{path}/-", "value": v} for v in new[len(old):]]
        if len(new) == len(old):
            ops = []
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                ops.extend(make_patch(a, b, f"{path}/{i}"))
            return ops
        return [{"op": "replace", "path": path, "value": new}]
    if old != new:
        return [{"op": "replace", "path": path, "value": new}]
    return []
