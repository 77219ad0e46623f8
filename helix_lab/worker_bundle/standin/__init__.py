"""A CPython stand-in for the Cloudflare Python Workers runtime, so the bundle runs locally.

``entry.py`` imports ``workers`` (the SDK) and, for streams and sockets, ``js``. On
CPython neither works (the real SDK is installed in dev venvs but fails on ``import js``),
so :func:`install` puts these modules in their place in ``sys.modules``::

    from helix_lab.worker_bundle import standin

    standin.install()                       # before importing entry.py
    from helix_lab.worker_bundle import entry

    ns = standin.DurableObjectNamespace(entry.HelixAgentServer, storage=".helix/serve")
    env = standin.Env(AGENTS=ns, HELIX_TOKEN="...")
    response = await standin.call_entrypoint(entry.Default, standin.Request(
        "http://localhost/health"), env)

Modules: :mod:`.workers` (the SDK surface), :mod:`.js` (TransformStream, TextEncoder,
WebSocketPair), :mod:`.storage` (``ctx.storage.sql``), :mod:`.host` (env, contexts, the
Durable Object namespace). Outside itself it imports only the runtime's Pyodide-safe
core (``helix_lab.runtime.objects`` and ``helix_lab.runtime.sql``), which every generated
Worker bundle carries, so it can be loaded next to a bundle on its own.
"""

from __future__ import annotations

import sys
from types import ModuleType

from . import js, workers
from .host import (
    DurableObjectId,
    DurableObjectNamespace,
    DurableObjectState,
    DurableObjectStub,
    Env,
    ExecutionContext,
    call_entrypoint,
)
from .js import ReadableStream, TransformStream, WebSocket, WebSocketPair, WritableStream
from .storage import DurableObjectStorage, SqlCursor, SqlError, SqlStorage
from .workers import DurableObject, Request, Response, WorkerEntrypoint, fetch

__all__ = [
    "DurableObject",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectState",
    "DurableObjectStorage",
    "DurableObjectStub",
    "Env",
    "ExecutionContext",
    "ReadableStream",
    "Request",
    "Response",
    "SqlCursor",
    "SqlError",
    "SqlStorage",
    "TransformStream",
    "WebSocket",
    "WebSocketPair",
    "WorkerEntrypoint",
    "WritableStream",
    "call_entrypoint",
    "fetch",
    "install",
    "installed",
    "uninstall",
]

_MODULES: dict[str, ModuleType] = {"workers": workers, "js": js}
_saved: dict[str, ModuleType | None] = {}


def install() -> None:
    """Make ``import workers`` and ``import js`` find the stand-in. Idempotent."""
    for name, module in _MODULES.items():
        current = sys.modules.get(name)
        if current is module:
            continue
        _saved.setdefault(name, current)
        sys.modules[name] = module


def installed() -> bool:
    return all(sys.modules.get(name) is module for name, module in _MODULES.items())


def uninstall() -> None:
    """Put back whatever ``workers`` and ``js`` were before :func:`install`."""
    for name, module in _MODULES.items():
        if sys.modules.get(name) is not module:
            continue
        previous = _saved.pop(name, None)
        if previous is None:
            del sys.modules[name]
        else:
            sys.modules[name] = previous
