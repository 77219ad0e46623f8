"""The stream's vocabulary and the error tree each live in one place, and agree with the code."""

from __future__ import annotations

import importlib
import pkgutil
import typing

import helix_lab
from helix_lab import errors
from helix_lab.runtime.chunks import (
    CHUNK_SHAPES,
    CHUNK_TYPES,
    RESUMABLE,
    SESSION_STATUSES,
    TERMINAL,
)
from helix_lab.runtime.http import Request
from helix_lab.widgets.view_state import _HANDLERS, _STATUS_BY_CHUNK, ViewState, allowed_actions


def test_every_chunk_type_has_a_shape_whose_type_is_its_own() -> None:
    assert set(CHUNK_SHAPES) == set(CHUNK_TYPES)
    for kind, shape in CHUNK_SHAPES.items():
        literal = typing.get_type_hints(shape)["type"]
        assert typing.get_args(literal) == (kind,), shape.__name__


def test_terminal_and_resumable_name_known_types_and_statuses() -> None:
    assert TERMINAL <= CHUNK_TYPES
    assert RESUMABLE <= SESSION_STATUSES
    assert set(_STATUS_BY_CHUNK) <= CHUNK_TYPES
    assert set(_STATUS_BY_CHUNK.values()) <= SESSION_STATUSES
    assert set(_HANDLERS) <= CHUNK_TYPES
    for status in RESUMABLE:
        assert "resume" in allowed_actions(status)


def test_the_view_folds_every_terminal_chunk_into_a_final_status() -> None:
    for kind in TERMINAL:
        view = ViewState("a", "s")
        view.apply({"type": kind, "sequence": 1, "step": 0, "timestamp": 0, "reason": "x",
                    "error": "boom", "output": "done"})
        assert view.status in SESSION_STATUSES and view.status != "running", kind


WORKER_ONLY = {"js", "pyodide", "workers", "_cloudflare_compat_flags"}


def _public_exceptions() -> list[type[BaseException]]:
    # The Worker bundle imports Cloudflare's `workers`: with the stand-in in its place, the
    # bundle's modules are walked whatever other tests imported before this one.
    from helix_lab.worker_bundle import standin

    was_installed = standin.installed()
    standin.install()
    try:
        return _walk_exceptions()
    finally:
        if not was_installed:
            standin.uninstall()


def _walk_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    # The Jupyter layers need a kernel to import; the stand-in imitates Cloudflare's own
    # `workers` module, whose errors are Cloudflare's, not ours; the Pyodide glue needs the
    # real SDK, inside Pyodide.
    skip = ("helix_lab.magics", "helix_lab.widgets", "helix_lab.workbench",
            "helix_lab.worker_bundle.standin", "helix_lab.pyodide_host.glue")
    for info in pkgutil.walk_packages(helix_lab.__path__, "helix_lab."):
        if info.name.startswith(skip):
            continue
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name in WORKER_ONLY:  # runs only inside a Worker, under Pyodide
                continue
            raise
        for name in getattr(module, "__all__", []):
            value = getattr(module, name, None)
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and not issubclass(value, Warning)):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_public_exception_is_in_the_one_tree_that_errors_py_draws() -> None:
    exceptions = _public_exceptions()
    assert errors.LLMError in exceptions and errors.DeployError in exceptions
    assert "ObjectUnavailable" in {e.__name__ for e in exceptions}  # the bundle was walked
    outside = [e.__name__ for e in exceptions if not issubclass(e, errors.HelixError)]
    assert outside == []
    undrawn = [e.__name__ for e in exceptions if e is not errors.HelixError
               and f" {e.__name__} " not in errors.__doc__]
    assert undrawn == []
    for e in exceptions:  # drawn under the right parent
        if e is errors.HelixError:
            continue
        parent = e.__mro__[1].__name__
        assert parent == "HelixError" or parent in errors.__doc__, e


def test_a_404_is_not_a_409() -> None:
    assert not issubclass(errors.NotFoundError, errors.ConflictError)
    assert not issubclass(errors.ConflictError, errors.NotFoundError)


def test_one_http_error_type_round_trips_through_its_wire_body() -> None:
    sent = errors.BadRequestError("options.mode must be 'continue'.", field="options.mode")
    assert sent.status == 400 and sent.code == "bad_request"
    received = errors.backend_error(sent.status, sent.to_body())
    assert type(received) is errors.BadRequestError
    assert (received.message, received.code, received.field) == (
        sent.message, "bad_request", "options.mode")
    conflict = errors.backend_error(409, errors.ConflictError("busy", code="already_executing")
                                    .to_body())
    assert isinstance(conflict, errors.ConflictError) and conflict.code == "already_executing"


def test_a_malformed_body_is_a_bad_request_error_naming_the_problem() -> None:
    request = Request("POST", "/start", body=b"{nope")
    try:
        request.json()
    except errors.BadRequestError as exc:
        assert exc.status == 400 and "not valid JSON" in exc.message
    else:
        raise AssertionError("expected BadRequestError")
