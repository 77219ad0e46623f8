"""The agent server's logger: the seed's ``Logger`` or a stdlib one, and quiet by default.

``create_agent_server(logger=...)`` takes either shape: the seed's ``Logger`` (``debug``,
``info``, ``warn``, ``error``, each ``(message, meta?)``) or a :class:`logging.Logger`
(``warning``, and ``exc_info`` for an exception). :class:`RuntimeLog` writes to whichever
it was given, with the method it has. With no logger it writes nothing, as the seed's
``noopLogger``: a host that wants the server's warnings passes a logger (the Worker
bundle passes ``logging.getLogger("helix_lab.worker")``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

__all__ = ["Level", "RuntimeLog"]

Level = Literal["debug", "info", "warning", "error"]

_NAMES: dict[str, tuple[str, ...]] = {
    "debug": ("debug",), "info": ("info",), "warning": ("warning", "warn"),
    "warn": ("warn", "warning"), "error": ("error",),
}


class RuntimeLog:
    """One logging face over a seed-shaped logger, a stdlib logger, or none at all.

    It has both shapes' methods (``debug``, ``info``, ``warn``, ``warning``, ``error``), so
    hooks and custom endpoints may call it as they would either.
    """

    def __init__(self, logger: Any = None) -> None:
        self.target = logger
        self._stdlib = isinstance(logger, logging.Logger | logging.LoggerAdapter)

    def log(self, level: str, message: str, exc: BaseException | None = None) -> None:
        """Write ``message`` at ``level``, with ``exc`` when there is one."""
        if self.target is None:
            return
        method = next((m for m in (getattr(self.target, name, None)
                                   for name in _NAMES.get(level, (level,))) if callable(m)),
                      None)
        if method is None:
            return
        if self._stdlib:
            method(message, exc_info=exc)
        elif exc is None:
            method(message)
        else:  # the seed's Logger takes (message, meta)
            method(message, {"error": f"{type(exc).__name__}: {exc}"})

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.log("debug", message % args if args else message)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.log("info", message % args if args else message)

    def warn(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.log("warning", message % args if args else message)

    warning = warn

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.log("error", message % args if args else message)

    def __repr__(self) -> str:
        return f"RuntimeLog({self.target!r})"
