"""The CPython stand-in for the Workers runtime keeps the Durable Object semantics we rely on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from helix_lab.worker_bundle import standin
from helix_lab.worker_bundle.do_sql import DOSqlStorage
from helix_lab.worker_bundle.standin import (
    DurableObject,
    DurableObjectNamespace,
    Env,
    Request,
    Response,
    SqlError,
    TransformStream,
    WebSocketPair,
    WritableStream,
)


class Recorder(DurableObject):
    """A small object: counts its constructions, logs its events, keeps rows in SQL."""

    built = 0
    timeline: list[str] = []

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        type(self).built += 1
        self.log: list[str] = []
        self.received: list[Any] = []
        self.closed: list[tuple[int, str]] = []
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS items (k TEXT PRIMARY KEY, v INTEGER)")

    async def fetch(self, request: Request) -> Response:
        path = request.url.split("://", 1)[1].partition("/")[2]
        if path == "slow":
            self.log.append("start")
            type(self).timeline.append("start")
            await asyncio.sleep(0.05)
            self.log.append("end")
            type(self).timeline.append("end")
            return Response("slow done")
        if path == "put":
            body = await request.json()
            self.ctx.storage.sql.exec("INSERT OR REPLACE INTO items VALUES (?, ?)",
                                      body["k"], body["v"])
            return Response.json({"ok": True})
        if path == "items":
            rows = self.ctx.storage.sql.exec("SELECT k, v FROM items ORDER BY k").toArray()
            return Response.json({"items": rows})
        if path == "stream":
            pipe = TransformStream.new()
            writer = pipe.writable.getWriter()

            async def pump() -> None:
                for i in range(3):
                    await writer.write(f"part {i};".encode())
                    await asyncio.sleep(0.03)
                await writer.close()

            self.ctx.waitUntil(pump())
            return Response(pipe.readable, headers={"content-type": "text/plain"})
        if path == "ws":
            client, server = WebSocketPair.new().object_values()
            self.ctx.acceptWebSocket(server)
            server.serializeAttachment({"who": "tester"})
            server.send("hello")
            return Response(None, status=101, web_socket=client)
        if path == "whoami":
            return Response(f"{self.ctx.id.toString()} {self.ctx.id.name}")
        return Response("no such path", status=404)

    async def webSocketMessage(self, ws: Any, message: Any) -> None:
        self.received.append(message)
        ws.send(json.dumps({"echo": message, "attachment": ws.deserializeAttachment()}))

    async def webSocketClose(self, ws: Any, code: int, reason: str, was_clean: bool) -> None:
        self.closed.append((code, reason))

    def add(self, a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}


@pytest.fixture
async def make_namespace(tmp_path: Path) -> Any:
    made: list[DurableObjectNamespace] = []

    def make(storage: Path | None = None) -> DurableObjectNamespace:
        namespace = DurableObjectNamespace(Recorder, storage or tmp_path / "objects")
        Env(AGENTS=namespace)
        made.append(namespace)
        return namespace

    yield make
    for namespace in made:
        await namespace.close()


async def test_ids_are_deterministic(make_namespace: Any) -> None:
    namespace = make_namespace()
    a, again, b = (namespace.idFromName(n) for n in ("session:a", "session:a", "session:b"))
    assert a == again and a.equals(again) and a != b
    assert len(a.toString()) == 64 and int(a.toString(), 16) >= 0 and a.name == "session:a"
    assert namespace.idFromString(a.toString()) == a
    assert namespace.newUniqueId() != namespace.newUniqueId()
    with pytest.raises(TypeError):
        namespace.idFromString("not-an-id")


async def test_one_instance_per_id(make_namespace: Any) -> None:
    namespace = make_namespace()
    Recorder.built = 0
    one = namespace.getByName("one")
    await one.fetch("http://do/items")
    await namespace.get(namespace.idFromName("one")).fetch("http://do/items")
    await namespace.getByName("two").fetch("http://do/items")
    assert Recorder.built == 2
    assert namespace.instance(namespace.idFromName("one")) is not namespace.instance(
        namespace.idFromName("two"))
    whoami = await (await one.fetch("http://do/whoami")).text()
    assert whoami == f"{namespace.idFromName('one').toString()} one"


async def test_requests_to_one_object_do_not_interleave(make_namespace: Any) -> None:
    namespace = make_namespace()
    stub = namespace.getByName("gate")
    await asyncio.gather(*(stub.fetch("http://do/slow") for _ in range(3)))
    assert namespace.instance(stub.id).log == ["start", "end"] * 3
    other = namespace.getByName("elsewhere")
    Recorder.timeline = []
    await asyncio.gather(stub.fetch("http://do/slow"), other.fetch("http://do/slow"))
    assert Recorder.timeline == ["start", "start", "end", "end"]  # two objects: no gate


async def test_a_streaming_body_is_read_outside_the_gate(make_namespace: Any) -> None:
    namespace = make_namespace()
    stub = namespace.getByName("streamer")
    response = await stub.fetch("http://do/stream")
    chunks = []
    async for chunk in response.body:
        chunks.append(chunk.to_bytes())
        if len(chunks) == 1:  # mid-stream, the object still takes requests
            answer = await asyncio.wait_for(stub.fetch("http://do/items"), 60)
            assert answer.status == 200
    assert b"".join(chunks) == b"part 0;part 1;part 2;"
    with pytest.raises(OSError, match="Body already used"):
        await response.text()


class RecordingSink:
    """An underlying sink that keeps what it is given; ``fail_on`` makes a write raise."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.fail_on = fail_on
        self.events: list[tuple[str, Any]] = []
        self.wrote = asyncio.Event()

    async def write(self, chunk: bytes) -> None:
        if chunk == self.fail_on:
            raise ConnectionResetError("the client went away")
        await asyncio.sleep(0)  # a real sink may wait for the socket
        self.events.append(("write", bytes(chunk)))
        self.wrote.set()

    async def close(self) -> None:
        self.events.append(("close", None))

    async def abort(self, reason: Any) -> None:
        self.events.append(("abort", str(reason)))


async def started_pipe(sink: RecordingSink | None = None) -> tuple[Any, Any, RecordingSink,
                                                                  asyncio.Future[Any]]:
    """A TransformStream piped into ``sink`` (a new RecordingSink by default), once the pipe
    has started: from then on, writes go straight through. Returns the stream, its writer,
    the sink and the piping task."""
    pipe = TransformStream.new()
    writer = pipe.writable.getWriter()
    sink = sink or RecordingSink()
    piping = asyncio.ensure_future(pipe.readable.pipeTo(WritableStream.new(sink)))
    await asyncio.sleep(0)
    return pipe, writer, sink, piping


async def test_a_piped_body_reaches_the_sink_in_the_writers_turn() -> None:
    pipe = TransformStream.new()
    writer = pipe.writable.getWriter()
    sink = RecordingSink()
    await writer.write(b"queued 1;")
    await writer.write(b"queued 2;")
    piping = asyncio.ensure_future(pipe.readable.pipeTo(WritableStream.new(sink)))
    await asyncio.wait_for(sink.wrote.wait(), 60)  # the pipe starts with what was queued
    assert sink.events == [("write", b"queued 1;queued 2;")]
    for i in range(3):
        await writer.write(f"live {i};".encode())
        # When the write returns, the sink has the chunk: no reader task in between.
        assert sink.events[-1] == ("write", f"live {i};".encode())
    await writer.close()
    await asyncio.wait_for(piping, 60)
    assert sink.events[-1] == ("close", None) and len(sink.events) == 5
    with pytest.raises(TypeError, match="locked"):
        pipe.readable.__aiter__()


async def test_concurrent_writes_to_a_piped_body_stay_in_order() -> None:
    _, writer, sink, piping = await started_pipe()
    await asyncio.gather(*(writer.write(f"{i};".encode()) for i in range(20)))
    await writer.close()
    await asyncio.wait_for(piping, 60)
    assert [data for kind, data in sink.events if kind == "write"] == [
        f"{i};".encode() for i in range(20)]


async def test_a_cancelled_pipe_ends_and_its_writer_fails() -> None:
    pipe, writer, sink, piping = await started_pipe()
    await writer.write(b"one;")
    pipe.readable.cancel()  # the host's client hung up
    await asyncio.wait_for(piping, 60)
    assert sink.events == [("write", b"one;")]  # neither closed nor aborted
    with pytest.raises(OSError):
        await writer.write(b"two;")


async def test_a_failing_sink_cancels_the_stream_and_fails_the_pipe() -> None:
    pipe, writer, sink, piping = await started_pipe(RecordingSink(fail_on=b"boom;"))
    await writer.write(b"fine;")
    with pytest.raises(OSError, match="piped destination failed"):
        await writer.write(b"boom;")
    assert pipe.readable.cancelled
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(piping, 60)
    assert sink.events == [("write", b"fine;")]


async def test_a_failed_stream_aborts_the_sink() -> None:
    pipe, writer, sink, piping = await started_pipe()
    await writer.write(b"partial;")
    await writer.abort("upstream broke")
    with pytest.raises(OSError, match="upstream broke"):
        await asyncio.wait_for(piping, 60)
    assert sink.events == [("write", b"partial;"), ("abort", "upstream broke")]
    with pytest.raises(TypeError, match=r"WritableStream\.new"):
        await TransformStream.new().readable.pipeTo(pipe.writable)


async def test_storage_survives_a_new_namespace(tmp_path: Path, make_namespace: Any) -> None:
    first = make_namespace(tmp_path / "store")
    await first.getByName("keeper").fetch("http://do/put", method="POST",
                                          body=json.dumps({"k": "a", "v": 1}))
    await first.close()
    second = make_namespace(tmp_path / "store")
    assert second.stored_ids() == [second.idFromName("keeper").toString()]
    items = await (await second.getByName("keeper").fetch("http://do/items")).json()
    assert items == {"items": [{"k": "a", "v": 1}]}


def test_cursor_api(tmp_path: Path) -> None:
    storage = standin.DurableObjectStorage(str(tmp_path / "db.sqlite"))
    sql = storage.sql
    created = sql.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL);"
                       "INSERT INTO t (name, score) VALUES ('a;b', 1.0);"
                       "INSERT INTO t (name, score) VALUES (?, ?)", "c", 2.5)
    assert created.rowsWritten == 1
    cursor = sql.exec("SELECT * FROM t ORDER BY id")
    assert cursor.columnNames == ["id", "name", "score"]
    rows = cursor.toArray()
    assert rows == [{"id": 1, "name": "a;b", "score": 1}, {"id": 2, "name": "c", "score": 2.5}]
    assert isinstance(rows[0]["score"], int) and rows[0].name == "a;b"  # JS numbers, JsDict
    assert [r["id"] for r in sql.exec("SELECT id FROM t")] == [1, 2]
    assert list(sql.exec("SELECT id, name FROM t").raw()) == [[1, "a;b"], [2, "c"]]
    partly = sql.exec("SELECT id FROM t ORDER BY id")
    assert next(partly) == {"id": 1} and partly.toArray() == [{"id": 2}]  # the rest only
    assert sql.exec("SELECT ? AS b", bytearray(b"ab")).one() == {"b": b"ab"}
    assert sql.exec("SELECT name FROM t WHERE id = ?", 2).one() == {"name": "c"}
    with pytest.raises(SqlError, match="no results"):
        sql.exec("SELECT * FROM t WHERE id = 99").one()
    with pytest.raises(SqlError, match="more than one"):
        sql.exec("SELECT * FROM t").one()
    for forbidden in ("BEGIN", "COMMIT", "SAVEPOINT x", "-- hi\nROLLBACK"):
        with pytest.raises(SqlError, match="transactionSync"):
            sql.exec(forbidden)
    with pytest.raises(SqlError, match="_cf_"):
        sql.exec("CREATE TABLE _cf_mine (x)")
    with pytest.raises(TypeError, match="boolean"):
        sql.exec("SELECT ?", True)
    with pytest.raises(SqlError):
        sql.exec("SELECT * FROM missing")
    assert sql.databaseSize > 0
    storage.close()


def test_transaction_sync_refuses_an_awaitable_and_takes_back_what_was_written(
        tmp_path: Path) -> None:
    storage = standin.DurableObjectStorage(str(tmp_path / "db.sqlite"))
    storage.sql.exec("CREATE TABLE t (x INTEGER)")

    def write_then_hand_back_a_coroutine() -> Any:
        storage.sql.exec("INSERT INTO t VALUES (1)")
        return asyncio.sleep(0)

    with pytest.raises(TypeError, match="synchronous function"):
        storage.transactionSync(write_then_hand_back_a_coroutine)
    assert storage.sql.exec("SELECT COUNT(*) AS n FROM t").one()["n"] == 0
    assert storage.transactionSync(lambda: None) is None  # a None result passes as is
    storage.close()


def test_the_runtime_binding_stores_a_boolean_as_an_integer(tmp_path: Path) -> None:
    # ctx.storage.sql refuses booleans; DOSqlStorage converts them (and nothing else).
    storage = standin.DurableObjectStorage(str(tmp_path / "db.sqlite"))
    sql = DOSqlStorage(storage)
    sql.exec("CREATE TABLE t (a, b, c)")
    sql.exec("INSERT INTO t VALUES (?, ?, ?)", True, False, "x")
    sql.exec("INSERT INTO t VALUES (?, ?, ?)", 7, None, 1.5)
    assert sql.exec("SELECT a, b, c, typeof(a) AS ta FROM t ORDER BY rowid") == [
        {"a": 1, "b": 0, "c": "x", "ta": "integer"},
        {"a": 7, "b": None, "c": 1.5, "ta": "integer"}]
    storage.close()


def test_transaction_sync_rolls_back_on_exception(tmp_path: Path) -> None:
    storage = standin.DurableObjectStorage(str(tmp_path / "db.sqlite"))
    storage.sql.exec("CREATE TABLE t (x INTEGER)")

    def write_then_fail() -> None:
        storage.sql.exec("INSERT INTO t VALUES (1)")
        storage.transactionSync(lambda: storage.sql.exec("INSERT INTO t VALUES (2)"))
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        storage.transactionSync(write_then_fail)
    assert storage.sql.exec("SELECT COUNT(*) AS n FROM t").one()["n"] == 0
    assert storage.transactionSync(lambda: (storage.sql.exec("INSERT INTO t VALUES (3)"),
                                            "kept")[1]) == "kept"
    assert storage.sql.exec("SELECT x FROM t").toArray() == [{"x": 3}]

    async def not_sync() -> None:
        pass

    with pytest.raises(TypeError, match="synchronous"):
        storage.transactionSync(not_sync)
    storage.close()


async def test_websocket_messages_reach_the_object(make_namespace: Any) -> None:
    namespace = make_namespace()
    stub = namespace.getByName("chat")
    response = await stub.fetch("http://do/ws", headers={"upgrade": "websocket"})
    assert response.status == 101
    client = response.js_object.webSocket
    assert await client.next_event() == ("message", "hello")
    client.send("ping")
    kind, data = await asyncio.wait_for(client.next_event(), 60)
    assert kind == "message"
    assert json.loads(data) == {"echo": "ping", "attachment": {"who": "tester"}}

    namespace.evict(stub.id)  # hibernation: a new instance gets the next message
    client.send("again")
    _, data = await asyncio.wait_for(client.next_event(), 60)
    assert json.loads(data)["echo"] == "again"
    fresh = namespace.instance(stub.id)
    assert fresh.received == ["again"] and len(fresh.ctx.getWebSockets()) == 1

    client.close(1000, "bye")
    for _ in range(6000):  # 60 s at least: only a hang takes so long
        if fresh.closed:
            break
        await asyncio.sleep(0.01)
    assert fresh.closed == [(1000, "bye")] and fresh.ctx.getWebSockets() == []
    with pytest.raises(OSError):
        client.send("after close")


async def test_rpc_clones_arguments_and_results(make_namespace: Any) -> None:
    namespace = make_namespace()
    stub = namespace.getByName("rpc")
    result = await stub.add(2, 3)
    assert result == {"sum": 5} and result.sum == 5
    with pytest.raises(TypeError, match="RPC"):
        await stub.add((1,), 2)


async def test_requests_and_responses_behave_like_the_sdk() -> None:
    request = Request("https://x/y?z=1", method="POST", headers={"X-Thing": "1"}, body="hi")
    assert str(request.method) == "POST" and request.headers.get("x-thing") == "1"
    assert await request.text() == "hi"
    with pytest.raises(OSError, match="Body already used"):
        await request.bytes()
    with pytest.raises(TypeError):
        Request("/relative")
    with pytest.raises(TypeError):
        Request("https://x/", method="GET", body="no")
    made = Response.json({"a": 1}, status=404)
    assert made.status == 404 and made.headers["content-type"] == "application/json"
    assert await made.json() == {"a": 1}
    with pytest.raises(ValueError):
        Response(None, status=101)
    with pytest.raises(TypeError):
        Response({"not": "allowed"})


async def test_outbound_fetch_streams_through_httpx() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-key"] == "k" and request.content == b'{"q": 1}'
        return httpx.Response(201, headers={"content-type": "text/event-stream"},
                              stream=httpx.ByteStream(b"data: 1\n\ndata: 2\n\n"))

    standin.workers.set_fetch_transport(httpx.MockTransport(handler))
    try:
        response = await standin.fetch("https://api.test/v1", method="POST",
                                       headers={"x-key": "k"}, body='{"q": 1}')
        assert response.status == 201
        body = b"".join([chunk.to_bytes() async for chunk in response.body])
        assert body == b"data: 1\n\ndata: 2\n\n"
    finally:
        standin.workers.set_fetch_transport(None)
    with pytest.raises(OSError):
        await standin.fetch("http://127.0.0.1:9/nothing")


def test_install_and_uninstall() -> None:
    import sys

    before = sys.modules.get("workers")
    standin.install()
    try:
        import js
        import workers

        assert workers is standin.workers and js is standin.js and standin.installed()
    finally:
        standin.uninstall()
    assert sys.modules.get("workers") is before
