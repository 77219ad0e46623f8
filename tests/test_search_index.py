"""``SearchIndex`` on a real SQLite file, written through the stream that stores the chunks:
what is indexed, how deltas join, when rows are written, and recovery after a stop.

The endpoint tests (``GET /search`` on every backend) are in ``test_viewer_endpoints.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix_lab.runtime.search import INDEX_EVERY, STEP_ENDS, SearchIndex, SearchQueryError
from helix_lab.runtime.sql import SqliteStorage
from helix_lab.runtime.stream import DOStreamManager


class Session:
    """A stream on a SQLite file; ``write`` stores chunks at once (no event loop)."""

    def __init__(self, path: Path) -> None:
        self.sql = SqliteStorage(path)
        self.stream = DOStreamManager(self.sql)

    def write(self, kind: str, step: int, **fields: Any) -> int:
        return self.stream.write({"type": kind, **fields}, step=step)["sequence"]

    @property
    def index(self) -> SearchIndex:
        return self.stream.search

    def rows(self) -> int:
        return int(self.sql.exec("SELECT COUNT(*) AS n FROM helix_search")[0]["n"])


@pytest.fixture
def session(tmp_path: Path) -> Session:
    made = Session(tmp_path / "s.sqlite")
    yield made
    made.sql.close()


def test_deltas_split_across_chunks_are_found_as_whole_words(session: Session) -> None:
    session.write("step_started", 1)
    session.write("text_delta", 1, delta="Sea ot")  # "otters" arrives in two deltas
    session.write("text_delta", 1, delta="ters use stones.")
    assert session.index.search("otters", 10) == []  # the step is still running
    session.write("checkpoint", 1, checkpointId="cp")
    assert session.index.search("otters", 10) == [
        {"sequence": 2, "step": 1, "type": "text_delta", "snippet": "Sea «otters» use stones."}]


def test_thinking_tool_input_and_output_are_indexed_with_their_types(session: Session) -> None:
    session.write("thinking", 2, delta="I should look up kelp forests.")
    session.write("tool_start", 2, toolName="search", toolCallId="t1",
                  input={"query": "otters kelp"})
    session.write("tool_end", 2, toolCallId="t1", output="Otters eat urchins.")
    session.write("tool_start", 3, toolName="fetch", toolCallId="t2", input={"url": "x"})
    session.write("tool_end", 3, toolCallId="t2", error="fetch failed: timeout")
    session.write("run_completed", 3, output="done")
    by_type = {h["type"]: h for h in session.index.search("kelp", 10)}
    assert set(by_type) == {"thinking", "tool_start"}
    assert by_type["thinking"]["sequence"] == 1
    assert by_type["tool_start"] == {"sequence": 2, "step": 2, "type": "tool_start",
                                     "snippet": 'search {"query":"otters «kelp»"}'}
    assert [(h["type"], h["sequence"]) for h in session.index.search("urchins", 10)] == [
        ("tool_end", 3)]
    assert [(h["type"], h["step"]) for h in session.index.search("timeout", 10)] == [
        ("tool_end", 3)]
    assert [h["type"] for h in session.index.search("search AND otters", 10)] == ["tool_start"]
    assert len(session.index.search("otters OR kelp OR urchins", 2)) == 2  # limit holds


def test_each_kind_of_text_in_each_step_is_one_row(session: Session) -> None:
    session.write("thinking", 1, delta="alpha ")
    session.write("text_delta", 1, delta="beta ")
    session.write("text_delta", 1, delta="more beta")
    session.write("text_delta", 2, delta="gamma ")
    session.write("run_completed", 2)
    hits = sorted(session.index.search("alpha OR beta OR gamma", 10), key=lambda h: h["sequence"])
    assert [(h["sequence"], h["type"], h["step"], h["snippet"]) for h in hits] == [
        (1, "thinking", 1, "«alpha» "), (2, "text_delta", 1, "«beta» more «beta»"),
        (4, "text_delta", 2, "«gamma» ")]


def test_rows_are_written_in_large_pieces_and_a_search_writes_what_waits(
        session: Session) -> None:
    session.write("text_delta", 1, delta="walrus ")
    session.write("checkpoint", 1)
    assert session.rows() == 0  # a step ended, but few chunks wait: not written yet
    assert [h["step"] for h in session.index.search("walrus", 5)] == [1]  # found anyway
    assert session.rows() == 1
    for step in range(2, 2 + INDEX_EVERY // 4):
        session.write("text_delta", step, delta=f"seal{step} ")
        session.write("tool_start", step, toolName="t", toolCallId=str(step), input={})
        session.write("tool_end", step, toolCallId=str(step), output="ok")
        session.write("checkpoint", step)
    assert session.rows() > 1  # written at a step's end once INDEX_EVERY chunks waited
    assert session.index.search("seal2", 5)[0]["step"] == 2


def test_catch_up_indexes_what_a_stopped_host_left(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    first = Session(path)
    first.write("tool_start", 1, toolName="lookup", toolCallId="a", input={"q": "x"})
    first.write("text_delta", 1, delta="the walrus ")
    first.write("text_delta", 1, delta="sleeps")
    first.write("checkpoint", 1)
    first.sql.close()  # the host stops before the waiting rows were written

    again = Session(path)  # opening the stream catches up
    hits = again.index.search("walrus", 10)
    assert [(h["sequence"], h["type"]) for h in hits] == [(2, "text_delta")]
    assert len(again.index.search("lookup", 10)) == 1
    again.write("text_delta", 2, delta="another walrus")
    again.write("run_completed", 2)
    assert len(again.index.search("walrus", 10)) == 2  # nothing indexed twice
    again.sql.close()


@pytest.mark.parametrize("end", ["checkpoint", "run_completed"])
async def test_text_of_a_rolled_back_transaction_is_never_found(tmp_path: Path,
                                                                end: str) -> None:
    sql = SqliteStorage(tmp_path / "s.sqlite")
    stream = DOStreamManager(sql)  # on a loop: writes wait for a flush, as in a server
    stream.write_delta("text_delta", "narwhal ", run_id="r", step=1)
    stream.write({"type": end}, step=1)

    def store_then_fail() -> None:
        stream.take_pending()  # stored, and for a run's end indexed, in this transaction
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        sql.transaction(store_then_fail)
    stream.discard_pending()
    first = stream.sequence + 1
    stream.write_delta("text_delta", "dugong ", run_id="r", step=1)
    stream.write({"type": end}, step=1)
    stream.flush()
    assert stream.search.search("narwhal", 10) == []
    assert [(h["sequence"], h["snippet"]) for h in stream.search.search("dugong", 10)] == [
        (first, "«dugong» ")]
    sql.close()


def test_a_delta_that_is_not_text_is_indexed_as_sql_reads_it(session: Session) -> None:
    session.write("text_delta", 1, delta="orca ")
    session.write("text_delta", 1, delta=42)
    session.write("thinking", 1, note="no delta at all")
    session.write("text_delta", 1, delta=" pods")
    session.write("run_completed", 1)
    assert [h["snippet"] for h in session.index.search("orca", 10)] == ["«orca» 42 pods"]
    session.write("text_delta", 2, delta="beluga")  # the next batch is gathered again
    session.write("run_completed", 2)
    assert [h["step"] for h in session.index.search("beluga", 10)] == [2]
    assert len(session.index.search("orca OR beluga", 10)) == 2  # nothing indexed twice


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)
_CHUNK = st.one_of(
    st.builds(lambda kind, delta: {"type": kind, "delta": delta},
              st.sampled_from(["text_delta", "thinking"]), st.text(max_size=8)),
    st.builds(lambda name, given: {"type": "tool_start", "toolName": name, "input": given},
              _JSON, _JSON),
    st.fixed_dictionaries({"type": st.just("tool_end")},
                          optional={"output": _JSON, "error": _JSON}),
    st.sampled_from([{"type": "checkpoint"}, {"type": "run_completed"}]))


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.tuples(_CHUNK, st.integers(0, 2)), max_size=25))
def test_the_rows_gathered_as_chunks_are_written_are_the_rows_sql_reads_back(
        chunks: list[tuple[dict[str, Any], int]]) -> None:
    gathered = DOStreamManager(SqliteStorage(":memory:"))
    by_sql = DOStreamManager(SqliteStorage(":memory:"))
    by_sql.search.available = False  # written with the index off, then indexed from storage
    ends = []
    for chunk, step in chunks:
        for stream in (gathered, by_sql):
            sequence = stream.write(chunk, step=step)["sequence"]
        if chunk["type"] in STEP_ENDS:
            ends.append(sequence)
    by_sql.search.available = True
    for end in ends:  # the same pieces: one step's end to the next
        by_sql.search.catch_up(end)
    if ends:
        gathered.search.index_through(ends[-1])
    rows = "SELECT body, type, sequence, last, step FROM helix_search ORDER BY rowid"
    assert gathered.sql.exec(rows) == by_sql.sql.exec(rows)


@pytest.mark.parametrize("query", ['"unclosed', "AND", "col:otters", "otters'"])
def test_a_query_fts5_cannot_parse_raises_with_the_reason(session: Session,
                                                            query: str) -> None:
    with pytest.raises(SearchQueryError) as info:
        session.index.search(query, 10)
    assert "not valid FTS5" in info.value.message and info.value.field == "q"
    assert session.index.search("fine", 10) == []  # the index is still usable
