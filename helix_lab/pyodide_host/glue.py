"""The Python half of the Pyodide host: calls into the bundle as workerd's entrypoint helper does.

This file runs inside Pyodide (``host.mjs`` loads it as ``helix_host_glue``), never on
CPython. Arguments cross from JS through ``workers.python_from_rpc`` (a JS ``Request``
becomes a ``workers.Request``) and results go back through ``workers.python_to_rpc`` (a
``workers.Response`` becomes its JS ``Response``).
"""

from __future__ import annotations

import inspect
from typing import Any

from workers import python_from_rpc, python_to_rpc

__all__ = ["invoke"]


async def invoke(instance: Any, method: str, args: Any) -> Any:
    """``await instance.method(*args)`` with the SDK's conversions on both sides."""
    result = getattr(instance, method)(*[python_from_rpc(arg) for arg in args])
    if inspect.isawaitable(result):
        result = await result
    return python_to_rpc(result)
