"""``helix_lab.runtime.jsonpatch``: round trips, agreement with the ``jsonpatch`` package,
and errors on bad patches.

Checkpoints store state as a patch against their parent, so a patch that does not
reproduce the new state exactly (``1`` vs ``1.0`` vs ``True`` included) would corrupt
every later checkpoint's state.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix_lab.runtime.jsonpatch import JsonPatchError, apply_patch, make_patch

KEYS = st.sampled_from(["a", "b", "c", "notes", "0", "1", "-", "", "a/b", "m~n", "~1", "x y"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=5)
    | st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: x + 0.0)
    | st.sampled_from(["", "x", "y", "~", "/"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)
DOCS = st.dictionaries(KEYS, JSON, max_size=5)

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def canonical(value: Any) -> str:
    """Strict JSON equality: ``1``, ``1.0`` and ``true`` are different documents."""
    return json.dumps(value, sort_keys=True)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def pointers(doc: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every JSON pointer in ``doc`` with the value it points at, the root included."""
    found = [(prefix, doc)]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.extend(pointers(value, f"{prefix}/{_escape(key)}"))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found.extend(pointers(value, f"{prefix}/{i}"))
    return found


def oracle(doc: Any, patch: list[dict[str, Any]]) -> tuple[bool, Any]:
    try:
        return True, jsonpatch.apply_patch(doc, patch)
    except Exception:  # jsonpatch raises several unrelated exception types
        return False, None


def ours(doc: Any, patch: list[dict[str, Any]]) -> tuple[bool, Any]:
    try:
        return True, apply_patch(doc, patch)
    except JsonPatchError:
        return False, None


@st.composite
def doc_and_patch(draw: st.DrawFn) -> tuple[Any, list[dict[str, Any]]]:
    """A document and a patch built from its real paths, with some invalid operations."""
    doc = draw(DOCS)
    current = copy.deepcopy(doc)
    patch: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        existing = pointers(current)
        containers = [(p, v) for p, v in existing if isinstance(v, dict | list)]
        kind = draw(st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "junk"]))

        def target(containers: list[tuple[str, Any]] = containers) -> str:
            if not containers:  # the root was replaced by a scalar
                return "/" + _escape(draw(KEYS))
            parent, value = draw(st.sampled_from(containers))
            if isinstance(value, dict):
                return f"{parent}/{_escape(draw(KEYS))}"
            index = draw(st.integers(min_value=0, max_value=len(value) + 1))
            return f"{parent}/{draw(st.sampled_from([str(index), '-']))}"

        if kind == "add":
            op = {"op": "add", "path": target(), "value": draw(JSON)}
        elif kind == "remove":
            op = {"op": "remove", "path": draw(st.sampled_from(existing))[0] or "/nope"}
        elif kind == "replace":
            op = {"op": "replace", "path": draw(st.sampled_from(existing))[0], "value": draw(JSON)}
        elif kind in ("move", "copy"):
            source = draw(st.sampled_from(existing))[0]
            op = {"op": kind, "from": source, "path": target()}
            if kind == "move" and (op["path"].startswith(source + "/") or not source):
                continue  # RFC 6902 forbids it; checked separately (jsonpatch is lax in lists)
        elif kind == "test":
            path, value = draw(st.sampled_from(existing))
            op = {"op": "test", "path": path,
                  "value": draw(st.sampled_from([value, "not-it"]))}
        else:
            op = {"op": draw(st.sampled_from(["add", "remove", "replace"])),
                  "path": draw(st.sampled_from(["/missing/deeper", "/0/1/2", "/a/-/b"])),
                  "value": 1}
        patch.append(op)
        ok, result = oracle(current, [op])
        if not ok:
            break  # the whole patch fails here; later operations would never run
        current = result
    return doc, patch


@SETTINGS
@given(DOCS, DOCS)
def test_make_patch_round_trips(old: Any, new: Any) -> None:
    before = canonical(old)
    patch = make_patch(old, new)
    assert canonical(apply_patch(old, patch)) == canonical(new)
    assert canonical(old) == before, "apply_patch must not modify its input"
    json.dumps(patch)  # a patch is stored as JSON
    if canonical(old) == canonical(new):
        assert patch == []


@SETTINGS
@given(JSON, JSON)
def test_make_patch_round_trips_any_json_root(old: Any, new: Any) -> None:
    assert canonical(apply_patch(old, make_patch(old, new))) == canonical(new)


@SETTINGS
@given(DOCS, DOCS)
def test_our_patches_mean_the_same_to_the_jsonpatch_package(old: Any, new: Any) -> None:
    patch = make_patch(old, new)
    assert canonical(jsonpatch.apply_patch(old, patch)) == canonical(new)


@SETTINGS
@given(DOCS, DOCS)
def test_we_apply_patches_made_by_the_jsonpatch_package(old: Any, new: Any) -> None:
    theirs = jsonpatch.make_patch(old, new).patch
    assert canonical(apply_patch(old, theirs)) == canonical(jsonpatch.apply_patch(old, theirs))


@SETTINGS
@given(doc_and_patch())
def test_apply_patch_agrees_with_jsonpatch_on_generated_patches(
        case: tuple[Any, list[dict[str, Any]]]) -> None:
    doc, patch = case
    before = canonical(doc)
    expected_ok, expected = oracle(doc, patch)
    got_ok, got = ours(doc, patch)
    assert got_ok == expected_ok, (patch, expected if expected_ok else "jsonpatch refused")
    if expected_ok:
        assert canonical(got) == canonical(expected)
    assert canonical(doc) == before


def test_list_append_is_stored_as_adds_at_the_end() -> None:
    patch = make_patch({"notes": ["a"]}, {"notes": ["a", "b", "c"]})
    assert patch == [{"op": "add", "path": "/notes/-", "value": "b"},
                     {"op": "add", "path": "/notes/-", "value": "c"}]


@pytest.mark.parametrize(("old", "new"), [
    ([1], [True, 2]),
    ([1], [1.0, 2]),
    ({"a": [0]}, {"a": [False]}),
    ({"a": 1}, {"a": 1.0}),
])
def test_number_and_bool_types_survive_a_round_trip(old: Any, new: Any) -> None:
    assert canonical(apply_patch(old, make_patch(old, new))) == canonical(new)


def test_keys_with_slash_and_tilde_are_escaped() -> None:
    patch = make_patch({}, {"a/b": 1, "m~n": 2})
    assert {op["path"] for op in patch} == {"/a~1b", "/m~0n"}
    assert apply_patch({}, patch) == {"a/b": 1, "m~n": 2}
    assert apply_patch({"~1": 0}, [{"op": "replace", "path": "/~01", "value": 5}]) == {"~1": 5}


@pytest.mark.parametrize(("doc", "patch", "words"), [
    ({}, {"op": "add", "path": "/a", "value": 1}, "list"),
    ({}, ["add"], "needs 'op' and 'path'"),
    ({}, [{"path": "/a", "value": 1}], "needs 'op' and 'path'"),
    ({}, [{"op": "add", "value": 1}], "needs 'op' and 'path'"),
    ({}, [{"op": "add", "path": 3, "value": 1}], "'path' must be a string"),
    ({}, [{"op": "frobnicate", "path": "/a"}], "unknown operation"),
    ({}, [{"op": "add", "path": "/a"}], "needs a 'value'"),
    ({}, [{"op": "replace", "path": "/a"}], "needs a 'value'"),
    ({}, [{"op": "test", "path": "/a"}], "needs a 'value'"),
    ({}, [{"op": "add", "path": "a", "value": 1}], "must start with '/'"),
    ({}, [{"op": "remove", "path": "/a"}], "does not exist"),
    ({}, [{"op": "remove", "path": ""}], "whole document"),
    ({}, [{"op": "replace", "path": "/a", "value": 1}], "does not exist"),
    ({}, [{"op": "add", "path": "/a/b", "value": 1}], "does not exist"),
    ({"l": [1]}, [{"op": "add", "path": "/l/5", "value": 1}], "out of range"),
    ({"l": [1]}, [{"op": "add", "path": "/l/01", "value": 1}], "not a valid array index"),
    ({"l": [1]}, [{"op": "add", "path": "/l/x", "value": 1}], "not a valid array index"),
    ({"l": [1]}, [{"op": "remove", "path": "/l/-"}], "not a valid array index"),
    ({"l": [1]}, [{"op": "replace", "path": "/l/1", "value": 2}], "out of range"),
    ({"s": "x"}, [{"op": "add", "path": "/s/t", "value": 1}], "cannot add"),
    ({"s": "x"}, [{"op": "add", "path": "/s/t/u", "value": 1}], "cannot descend"),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": 2}], "test failed"),
    ({"a": {}}, [{"op": "move", "from": "/a", "path": "/a/b"}], "its own children"),
    ({"a": 1}, [{"op": "move", "path": "/b"}], "string 'from'"),
    ({"a": 1}, [{"op": "copy", "from": "/zz", "path": "/b"}], "does not exist"),
    ({"a": 1}, [{"op": "add", "path": "/a~2", "value": 1}], "escape"),
    ({"a": 1}, [{"op": "add", "path": "/b~", "value": 1}], "escape"),
])
def test_bad_patches_raise_a_clear_error_and_leave_the_document(
        doc: Any, patch: Any, words: str) -> None:
    before = canonical(doc)
    with pytest.raises(JsonPatchError, match=words.replace("(", r"\(")):
        apply_patch(doc, patch)
    assert canonical(doc) == before


def test_a_failing_operation_applies_nothing_of_the_patch() -> None:
    doc = {"n": 1}
    with pytest.raises(JsonPatchError):
        apply_patch(doc, [{"op": "replace", "path": "/n", "value": 2},
                          {"op": "remove", "path": "/gone"}])
    assert doc == {"n": 1}


def test_json_patch_error_is_a_value_error() -> None:
    assert issubclass(JsonPatchError, ValueError)
