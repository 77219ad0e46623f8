"""``EnvView``: the Worker's ``env`` as the runtime's hooks, factories and hosts read it.

On Cloudflare, ``env`` is a JS object whose bindings and secrets are attributes; in the
kernel and in tests it is usually a dict. ``EnvView`` gives both one reading:
``env["X"]``, ``env.get("X")`` and ``env.X``. It never shows a value in its repr, since
``env`` holds secrets.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EnvView"]


class EnvView:
    """The Worker ``env`` as the runtime's hooks and factories expect it.

    ``env["X"]``, ``env.get("X")`` and ``env.X`` all work; a missing name is a KeyError,
    ``None`` and an AttributeError respectively. Its repr never shows a value.
    """

    def __init__(self, env: Any) -> None:
        object.__setattr__(self, "_env", env)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            value = getattr(self._env, name)
        except AttributeError:
            return default
        return default if value is None else value

    def __getitem__(self, name: str) -> Any:
        missing = object()
        value = self.get(name, missing)
        if value is missing:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def __repr__(self) -> str:
        return "<Worker env>"
