"""Helpers shared by the reliability tests (``test_rel_*.py``)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from helix_lab.runtime import Request


def assert_contiguous(sequences: list[int], start: int = 1, what: str = "") -> None:
    expected = list(range(start, start + len(sequences)))
    assert sequences == expected, f"{what}: sequences are not {start}..: {sequences}"


async def history(handle: Any) -> list[dict[str, Any]]:
    """Every stored chunk of a session, paging through ``GET /history``."""
    return [chunk async for chunk in handle.history_chunks(page=500)]


async def stub_json(stub: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = Request(method, path, json=body) if body is not None else Request(method, path)
    response = await stub.fetch(request)
    return response.status, response.json()


async def wait_idle(stub: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``GET /status`` until the session stops executing; returns the status."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await stub_json(stub, "GET", "/status")
        assert status == 200, body
        if not body["isExecuting"]:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"session still executing after {timeout} s: {body}")
        await asyncio.sleep(0.01)


def assert_error_body(status: int, raw: bytes, where: str) -> dict[str, Any]:
    """A 4xx body is exactly ``{"error": {"code": str, "message": str, ...}}``."""
    assert b"Traceback" not in raw, f"{where}: traceback on the wire: {raw[:300]!r}"
    body = json.loads(raw)
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {body}"
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], f"{where}: {body}"
    assert isinstance(error.get("message"), str) and error["message"], f"{where}: {body}"
    return error
