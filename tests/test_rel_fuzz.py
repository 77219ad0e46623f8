"""Bad input: hypothesis fuzzing of every endpoint, at the gateway and through ``helix serve``.

Every endpoint of a session (``POST /start /resume /retry /interrupt /abort``, ``GET
/status /sse /history /usage /messages /snapshot /checkpoints /checkpoints/{id}``) and of
the Worker (``/agents``, ``/health``, bearer auth, random paths) gets random methods,
JSON bodies (wrong types, huge numbers, NaN, nested junk, near-valid shapes with one bad
field, lone surrogate escapes), raw bodies (invalid UTF-8, empty, absurd nesting) and
random query strings. For every answer:

- the status is never 500 (nor any 5xx), and no body carries a traceback;
- a 4xx body is exactly ``{"error": {"code": str, "message": str, ...}}``;
- a rejected request (4xx), and any GET, leaves the session's stored rows (every
  ``helix_*`` table of its sqlite file) exactly as they were.

Requests go through :func:`helix_lab.runtime.gateway.route` on a ``LocalNamespace`` (what
the in-process client and the Worker run) and, for raw paths and bytes, through the ASGI app
of ``helix serve``. Examples are bounded (settings profile ``helix-reliability``) and
derandomized; ``--soak`` runs ten times as many with fresh randomness.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from rel_helpers import assert_error_body

from helix_lab.agent import Agent
from helix_lab.client.transport import agent_types_of
from helix_lab.llm.scripted import ScriptedLLM
from helix_lab.runtime import AgentRegistry, LocalNamespace, Request, create_agent_server
from helix_lab.runtime.gateway import route
from helix_lab.tools import tool

TOKEN = "fuzz-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}

settings.register_profile(
    "helix-reliability",
    deadline=None,
    max_examples=60,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def profile(examples: int, soak: bool) -> settings:
    return settings(settings.get_profile("helix-reliability"),
                    max_examples=examples * (10 if soak else 1), derandomize=not soak)


# -- the agent under fuzz ----------------------------------------------------------------------


class Counter(BaseModel):
    count: int = 0
    notes: list[str] = []


@tool
def bump(by: int = 1) -> int:
    """Add to the counter."""
    return by


fz = Agent(name="fz", tools=[bump], state_schema=Counter, register=False, max_steps=3)


def make_server() -> type:
    registry = AgentRegistry()
    registry.register(fz)
    return create_agent_server(
        llm_adapter=lambda env, ctx: ScriptedLLM(["All done."], loop=True), agents=registry)


# -- strategies ----------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
"""Text for paths and headers, which arrive as bytes and never hold lone surrogates."""
BODY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=[]), max_size=24),
    st.sampled_from(["\ud800", "\udfff", "a\udcffb", "\x00", "\u202e", "e\u0301", "\U0001f600"]),
)
"""Text inside JSON bodies: lone surrogates arrive there as \\uXXXX escapes."""
LEAF = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
        | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30])
        | st.floats(allow_nan=True, allow_infinity=True) | BODY_TEXT)
JSON = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(BODY_TEXT, inner, max_size=4), max_leaves=12)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, sometimes anything at all."""
    return st.one_of(good, good, JSON)


MESSAGE = st.fixed_dictionaries({}, optional={
    "role": maybe(st.sampled_from(["user", "assistant", "system", ""])),
    "content": maybe(BODY_TEXT | st.lists(
        st.fixed_dictionaries({"type": BODY_TEXT, "text": BODY_TEXT}), max_size=2)),
})
PATCH_OP = st.fixed_dictionaries({"op": maybe(st.sampled_from(
    ["add", "remove", "replace", "move", "copy", "test", "x"]))}, optional={
    "path": maybe(st.sampled_from(["/count", "/notes/-", "/notes/0", "", "/nope/deep", "~"])),
    "from": maybe(st.sampled_from(["/count", "/notes"])), "value": JSON})
STATE = maybe(st.fixed_dictionaries({}, optional={"count": maybe(st.integers()),
                                                  "notes": maybe(st.lists(BODY_TEXT, max_size=2))}))
START = st.fixed_dictionaries({}, optional={
    "agentType": maybe(st.sampled_from(["fz", "nope", "", "FZ"])),
    "sessionId": maybe(st.sampled_from(["done", "paused", "other", "bad id!", "", "x" * 200])
                       | st.uuids().map(str)),
    "input": maybe(st.fixed_dictionaries({}, optional={
        "message": maybe(BODY_TEXT), "state": STATE,
        "messages": maybe(st.lists(MESSAGE, max_size=3))})),
    "userId": maybe(BODY_TEXT), "tags": maybe(st.lists(BODY_TEXT, max_size=2)),
    "metadata": maybe(st.dictionaries(BODY_TEXT, BODY_TEXT, max_size=2)),
})
OPTIONS = st.fixed_dictionaries({}, optional={
    "mode": maybe(st.sampled_from(["continue", "retry", "branch", "from_checkpoint",
                                   "from_start", "sideways"])),
    "checkpointId": maybe(st.sampled_from(["cpv1-done-s0-t0-000000", "", "x"]) | BODY_TEXT),
    "modifyState": maybe(STATE | st.lists(PATCH_OP, max_size=3)),
    "appendMessages": maybe(st.lists(MESSAGE, max_size=2)),
    "message": maybe(BODY_TEXT),
})
CONTROL = st.fixed_dictionaries({}, optional={"agentType": maybe(
                                                  st.sampled_from(["fz", "fz", "FZ"]) | BODY_TEXT),
                                              "options": maybe(OPTIONS),
                                              "reason": maybe(BODY_TEXT)})
RAW_BODIES = [
    b"", b" ", b"\n", b"null", b"[]", b"0", b'""', b"true", b"NaN", b"-Infinity",
    b"{", b"{}}", b"\xff\xfe\xfd", b"\xed\xa0\x80", b"\x00" * 8, b"{\"a\": \"\xc3\x28\"}",
    b"[" * 200_000, b'{"a":' * 50_000, b"9" * 5000, b"1e999999", b'"\\udcff"',
    b'{"agentType": "fz", "sessionId": "done", "input": {"message": "\\ud800"}}',
    b'{"agentType": "fz", "options": {"mode": "branch", "checkpointId": "\\udfff"}}',
    b'{"agentType": "fz", "input": {"message": "hi"}, "userId": "\\ud83d"}',
    b'{"reason": "\\ud800\\u0041"}', b"\xef\xbb\xbf{}",
]


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


BODY = st.one_of(
    st.sampled_from(RAW_BODIES),
    st.binary(max_size=48),
    JSON.map(dumps),
    START.map(dumps),
    CONTROL.map(dumps),
)
QUERY_KEYS = st.sampled_from(["fromSequence", "limit", "checkpointId", "follow"]) | TEXT
EDGE_VALUES = st.sampled_from([
    "", "0", "-1", "1", "3", "1e3", "0x10", " 5", "\u0663", "NaN", "true", "%", "cpv1-done",
    "9" * 5000, "18446744073709551616", "9223372036854775808", "99999999999999999999",
    "-99999999999999999999"])
QUERY_VALUES = st.one_of(EDGE_VALUES, EDGE_VALUES, TEXT,
                         st.integers(min_value=-(10**30), max_value=10**30).map(str))
PARAMS = st.fixed_dictionaries({}, optional={k: QUERY_VALUES for k in (
    "fromSequence", "limit", "checkpointId", "follow")}).map(urlencode)
QUERY = st.one_of(
    st.just(""), PARAMS, PARAMS, PARAMS,
    st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=3).map(urlencode),
    st.sampled_from(["%", "%zz", "a=%ff", "&&&", "=", "fromSequence=%00", "limit=%ff%fe",
                     "fromSequence=1&fromSequence=x", "follow=1&fromSequence=99999999"]),
)
EDGE_REQUESTS = [  # (query, body): inputs that once reached storage unchecked
    ("fromSequence=18446744073709551616&limit=99999999999999999999", b""),
    ("fromSequence=9223372036854775808", b"{}"),
    ("checkpointId=%00", b'{"agentType": "fz", "input": {"message": "hi"}, "userId": "\\ud83d"}'),
    ("", b'{"agentType": "fz", "options": {"mode": "branch", "checkpointId": "\\udfff"}}'),
    ("", b'{"agentType": "fz", "input": {"message": "hi", "state": {"count": 18446744073709551616}}}'),
    ("", b'{"agentType": "fz", "options": {"modifyState": {"count": 99999999999999999999}}}'),
]
VALID_SESSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$")  # as the gateway's
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
SESSIONS = st.one_of(
    st.sampled_from(["done", "paused", "done", "paused", "fresh", "x" * 129, "a/b", "..",
                     "%2e%2e", "-lead", "ok.id:~_-"]),
    st.uuids().map(str),
    TEXT.map(lambda s: quote(s, safe="")),
)
ENDPOINTS = [
    ("POST", "/start"), ("POST", "/resume"), ("POST", "/retry"), ("POST", "/interrupt"),
    ("POST", "/abort"), ("GET", "/status"), ("GET", "/sse"), ("GET", "/history"),
    ("GET", "/usage"), ("GET", "/messages"), ("GET", "/snapshot"), ("GET", "/checkpoints"),
    ("GET", "/checkpoints/{id}"),
]


# -- storage snapshots -----------------------------------------------------------------------------


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every helix_* table of one object's sqlite file ({} if absent)."""
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND "
                            "name LIKE 'helix%' ORDER BY name").fetchall()
        # An FTS5 table's shadow tables hold its index and bookkeeping (a version row from
        # the start): the virtual table's own rows are what was stored.
        shadows = {f"{name}_{part}" for name, sql in rows if "fts5" in (sql or "").lower()
                   for part in ("data", "idx", "config", "docsize", "content")}
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                for t, _ in rows if t not in shadows}
    finally:
        conn.close()


def nothing_stored(rows: dict[str, list[tuple[Any, ...]]]) -> bool:
    return all(not v for k, v in rows.items() if k != "helix_meta")


# -- the harness -------------------------------------------------------------------------------------


class Harness:
    """A LocalNamespace on sqlite behind the gateway's ``route``, driven from a private loop."""

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        self.loop = asyncio.new_event_loop()
        self.ns = LocalNamespace(make_server(), storage=str(storage))
        self.checkpoint_ids: list[str] = []
        self.requests = 0
        self.rejected = 0
        self.run(self._seed())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def file_of(self, session_id: str) -> Path:
        return self.storage / f"{self.ns.id_from_name('session:' + session_id)}.sqlite3"

    async def _raw(self, method: str, target: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        response = await route(Request(method, target, body=body,
                                       headers=AUTH if headers is None else headers),
                               self.ns, token=TOKEN,
                               agent_types=lambda: agent_types_of(self.ns.server_class))
        if response.stream is None:
            return response.status, response.body
        parts: list[bytes] = []

        async def read() -> None:
            async for piece in response.stream:  # type: ignore[union-attr]
                parts.append(piece)

        try:  # a follow=1 stream never ends on its own: read what comes, then hang up
            await asyncio.wait_for(read(), 0.3)
        except TimeoutError:
            pass
        return response.status, b"".join(parts)

    async def _idle(self, session_id: str) -> None:
        for _ in range(6000):  # 60 s at least: only a hang takes so long
            status, body = await self._raw("GET", f"/sessions/{session_id}/status")
            if status != 200 or not json.loads(body)["isExecuting"]:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{session_id} still executing")

    async def _seed(self) -> None:
        start = {"agentType": "fz", "input": {"message": "hello"}}
        status, _ = await self._raw("POST", "/sessions/done/start", dumps(start))
        assert status == 200
        await self._idle("done")
        status, _ = await self._raw("POST", "/sessions/paused/start", dumps(start))
        assert status == 200
        status, _ = await self._raw("POST", "/sessions/paused/interrupt", b"{}")
        assert status == 200
        for sid in ("done", "paused"):
            _, body = await self._raw("GET", f"/sessions/{sid}/checkpoints")
            self.checkpoint_ids += [c["checkpointId"] for c in json.loads(body)["checkpoints"]]

    async def check(self, method: str, target: str, body: bytes,
                    headers: dict[str, str] | None = None, session_id: str | None = None
                    ) -> int:
        """Send one request and check the rules; returns the status."""
        path = self.file_of(session_id) if session_id else None
        before = dump(path) if path else None
        status, raw = await self._raw(method, target, body, headers)
        where = f"{method} {target[:200]} body={body[:120]!r}"
        self.requests += 1
        assert status < 500, f"{where}: {status} {raw[:300]!r}"
        assert b"Traceback" not in raw, f"{where}: {raw[:300]!r}"
        if 400 <= status < 500:
            self.rejected += 1
            assert_error_body(status, raw, where)
        elif not raw.startswith((b"id:", b"event:", b":")) and raw:
            json.loads(raw)  # a non-stream answer is JSON
        if path is not None and before is not None:
            after = dump(path)
            if status >= 400 or method != "POST":
                if before:
                    assert after == before, f"{where}: a rejected request changed storage"
                else:
                    assert nothing_stored(after), f"{where}: a rejected request stored rows"
            elif session_id:
                await self._idle(session_id)  # an accepted run: let it end before the next
        return status

    def close(self) -> None:
        self.run(self.ns.aclose())
        self.loop.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "db")
    try:
        yield h
    finally:
        h.close()


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "endpoint"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_session_endpoint_survives_fuzzed_input(harness: Harness, soak: bool,
                                                      method: str, endpoint: str) -> None:
    def send(sid: str, verb: str, cp: str, query: str, body: bytes) -> None:
        path = endpoint.replace("{id}", cp)
        target = f"/sessions/{sid}{path}" + (f"?{query}" if query else "")
        known = sid if VALID_SESSION.match(sid) else None
        harness.run(harness.check(verb, target, body, session_id=known))

    # The edges every run tries, on an existing session and on a new one; then random input.
    for sid in ("done", "paused", "edge-new"):
        for query, body in EDGE_REQUESTS:
            send(sid, method, harness.checkpoint_ids[0], query, body if method == "POST" else b"")

    @profile(100, soak)
    @given(sid=SESSIONS, verb=st.sampled_from([method] * 4 + METHODS),
           cp=st.sampled_from(harness.checkpoint_ids) | TEXT.map(lambda s: quote(s, safe="")),
           query=QUERY, body=BODY, get_body=st.booleans())
    def fuzz(sid: str, verb: str, cp: str, query: str, body: bytes, get_body: bool) -> None:
        send(sid, verb, cp, query, body if verb != "GET" or get_body else b"")

    fuzz()
    assert harness.requests > 0 and harness.rejected > 0


def test_worker_routes_auth_and_random_paths_survive_fuzzed_input(harness: Harness,
                                                                  soak: bool) -> None:
    auth_headers = st.one_of(
        st.just(AUTH), st.just({}), st.just({"authorization": "Bearer wrong"}),
        st.just({"authorization": f"bearer   {TOKEN}  "}), st.just({"authorization": TOKEN}),
        st.just({"authorization": f"Basic {TOKEN}"}), st.just({"authorization": "Bearer "}),
        TEXT.map(lambda t: {"authorization": t.encode("utf-8", "replace").decode("latin-1")}),
    )
    paths = st.one_of(
        st.sampled_from(["/health", "/agents", "/", "/sessions", "/sessions/", "/sessions//x",
                         "/sessions/done", "/sessions/done/", "/sessions/done/nope",
                         "/sessions/done/status/extra", "/sessions/done/checkpoints/",
                         "/agents/x", "/health/x", "//", "/sessions/%2F/status"]),
        TEXT.map(lambda s: "/" + quote(s, safe="/")),
        st.tuples(SESSIONS, TEXT).map(lambda p: f"/sessions/{p[0]}/{quote(p[1], safe='/')}"),
    )

    @profile(200, soak)
    @given(method=st.sampled_from(METHODS), path=paths, query=QUERY, body=BODY,
           headers=auth_headers)
    def fuzz(method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> None:
        target = path + (f"?{query}" if query else "")
        sid = "done" if path.startswith("/sessions/done") else None
        status = harness.run(harness.check(method, target, body, headers, session_id=sid))
        authorized = headers.get("authorization", "").partition(" ")[::2]
        valid = (authorized[0].lower() == "bearer" and authorized[1].strip() == TOKEN)
        if path == "/health":
            assert status == 200
        elif not valid:
            assert status == 401, f"{method} {target} with {headers}: {status}"

    fuzz()


# -- helix serve: raw HTTP through its ASGI app ----------------------------------------------------


class AsgiClient:
    """Calls an ASGI app with a raw path and body, the way uvicorn hands them over."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(self, method: str, raw_path: bytes, query: bytes, body: bytes,
                      headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
        hang_up = asyncio.Event()
        sent: list[dict[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": raw_path.decode("latin-1"),
            "raw_path": raw_path, "query_string": query, "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8787"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8787),
        }
        task = asyncio.ensure_future(self.app(scope, receive, send))
        done, _ = await asyncio.wait({task}, timeout=0.3)
        if not done:  # a stream that follows: hang up, as a client would
            hang_up.set()
            await asyncio.wait_for(task, 60)
        task.result()
        start = next(m for m in sent if m["type"] == "http.response.start")
        payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], payload


def test_helix_serve_answers_raw_fuzzed_http_without_500s(tmp_path: Path, soak: bool) -> None:
    from helix_lab.serve import create_app

    storage = tmp_path / "serve"
    built = create_app(storage=storage, token=TOKEN, environ={})
    client = AsgiClient(built.app)
    loop = asyncio.new_event_loop()
    auth = [(b"authorization", f"Bearer {TOKEN}".encode())]
    session_file = storage / f"{hashlib.sha256(b'session:done').hexdigest()}.sqlite"

    async def seed() -> None:
        body = dumps({"agentType": "researcher", "input": {"message": "otters"}})
        status, raw = await client.request("POST", b"/sessions/done/start", b"", body, auth)
        assert status == 200, raw
        for _ in range(6000):  # 60 s at least: only a hang takes so long
            _, raw = await client.request("GET", b"/sessions/done/status", b"", b"", auth)
            if not json.loads(raw)["isExecuting"]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the seeded serve session did not finish")

    loop.run_until_complete(seed())
    raw_paths = st.one_of(
        st.sampled_from([f"/sessions/done{p}".encode() for _, p in ENDPOINTS if "{" not in p]),
        st.sampled_from([b"/health", b"/agents", b"/sessions/done/checkpoints/x%00y",
                         b"/sessions/\xff\xfe/status", b"/sessions/done/\xc3(", b"/%",
                         b"/sessions/%zz/status", b"/sessions/done/../status", b"*"]),
        st.binary(min_size=1, max_size=40).map(lambda b: b"/" + b.replace(b"?", b"")),
    )
    counts = {"requests": 0}

    @profile(150, soak)
    @given(method=st.sampled_from(METHODS), raw_path=raw_paths,
           query=st.binary(max_size=30).map(lambda b: b.replace(b"#", b"")) | QUERY.map(
               str.encode), body=BODY, authorized=st.booleans())
    def fuzz(method: str, raw_path: bytes, query: bytes, body: bytes, authorized: bool) -> None:
        before = dump(session_file)
        status, raw = loop.run_until_complete(client.request(
            method, raw_path, query, body, auth if authorized else []))
        where = f"{method} {raw_path!r}?{query!r} body={body[:80]!r}"
        counts["requests"] += 1
        assert status < 500, f"{where}: {status} {raw[:300]!r}"
        assert b"Traceback" not in raw, where
        if 400 <= status < 500:
            assert_error_body(status, raw, where)
        if status >= 400 or method != "POST":
            assert dump(session_file) == before, f"{where}: storage changed"
        else:
            loop.run_until_complete(asyncio.sleep(0.05))

    try:
        fuzz()
    finally:
        loop.run_until_complete(built.app.aclose())
        loop.close()
    assert counts["requests"] >= 150
