"""``SearchIndex`` on a real SQLite file: what is indexed, how deltas join, and recovery.

The endpoint tests (``GET /search`` on both backends) are in ``test_viewer_endpoints.py``;
these drive the index directly with chunks shaped as the stream stores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helix_lab.runtime.search import SEGMENT_CHARS, SearchIndex, SearchQueryError
from helix_lab.runtime.sql import SqliteStorage


class Chunks:
    """Numbers chunks and keeps them, like the stream's table."""

    def __init__(self) -> None:
        self.stored: list[dict[str, Any]] = []

    def make(self, type_: str, step: int, **fields: Any) -> dict[str, Any]:
        chunk = {"type": type_, "sequence": len(self.stored) + 1, "step": step, **fields}
        self.stored.append(chunk)
        return chunk

    def read(self, after: int, limit: int) -> list[dict[str, Any]]:
        return [c for c in self.stored if c["sequence"] > after][:limit]


@pytest.fixture
def sql(tmp_path: Path) -> SqliteStorage:
    storage = SqliteStorage(tmp_path / "s.sqlite")
    yield storage
    storage.close()


def test_deltas_split_across_chunks_are_found_as_whole_words(sql: SqliteStorage) -> None:
    index = SearchIndex(sql)
    chunks = Chunks()
    # "otters" arrives in two deltas, in two separate writes (two flushes).
    index.add([chunks.make("step_started", 1), chunks.make("text_delta", 1, delta="Sea ot")])
    index.add([chunks.make("text_delta", 1, delta="ters use stones.")])
    assert index.search("otters", 10) == []  # the block is still open
    index.add([chunks.make("checkpoint", 1, checkpointId="cp")])
    hits = index.search("otters", 10)
    assert hits == [{"sequence": 2, "step": 1, "type": "text_delta",
                     "snippet": "Sea «otters» use stones."}]


def test_thinking_tool_input_and_output_are_indexed_with_their_types(sql: SqliteStorage) -> None:
    index = SearchIndex(sql)
    chunks = Chunks()
    index.add([
        chunks.make("thinking", 2, delta="I should look up kelp forests."),
        chunks.make("tool_start", 2, toolName="search", toolCallId="t1",
                    input={"query": "otters kelp"}),
        chunks.make("tool_end", 2, toolCallId="t1", output="Otters eat urchins."),
        chunks.make("tool_start", 3, toolName="fetch", toolCallId="t2", input={"url": "x"}),
        chunks.make("tool_end", 3, toolCallId="t2", error="fetch failed: timeout"),
        chunks.make("usage", 3, input_tokens=1, output_tokens=1),
    ])
    by_type = {h["type"]: h for h in index.search("kelp", 10)}
    assert set(by_type) == {"thinking", "tool_start"}
    assert by_type["thinking"]["sequence"] == 1
    assert by_type["tool_start"] == {"sequence": 2, "step": 2, "type": "tool_start",
                                     "snippet": 'search {"query": "otters «kelp»"}'}
    assert [(h["type"], h["sequence"]) for h in index.search("urchins", 10)] == [("tool_end", 3)]
    assert [(h["type"], h["step"]) for h in index.search("timeout", 10)] == [("tool_end", 3)]
    assert [h["type"] for h in index.search("search AND otters", 10)] == ["tool_start"]
    assert len(index.search("otters OR kelp OR urchins", 2)) == 2  # limit holds


def test_a_long_block_is_indexed_in_pieces_without_splitting_words(sql: SqliteStorage) -> None:
    index = SearchIndex(sql)
    chunks = Chunks()
    words = [f"word{i}" for i in range(2 * SEGMENT_CHARS // 5)]
    index.add([chunks.make("text_delta", 1, delta=w[:3]) for w in words[:1]])
    for w in words:  # each word in two deltas: "wor" + "d17 " style splits
        index.add([chunks.make("text_delta", 1, delta=w[:3] if w is not words[0] else ""),
                   chunks.make("text_delta", 1, delta=w[3:] + " ")])
    # Before the block ends, the pieces that passed SEGMENT_CHARS are already searchable.
    assert index.search("word5", 10)
    index.add([chunks.make("run_completed", 1)])
    for w in (words[0], words[len(words) // 2], words[-1]):
        assert len(index.search(w, 10)) == 1, w
    # no stray fragments: a word cut at a delta boundary is not indexed as two halves
    assert index.search('"d17"', 10) == []


def test_a_new_kind_or_step_ends_the_block(sql: SqliteStorage) -> None:
    index = SearchIndex(sql)
    chunks = Chunks()
    index.add([chunks.make("thinking", 1, delta="alpha "),
               chunks.make("text_delta", 1, delta="beta "),
               chunks.make("text_delta", 2, delta="gamma "),
               chunks.make("run_completed", 2)])
    hits = sorted(index.search("alpha OR beta OR gamma", 10), key=lambda h: h["sequence"])
    assert [(h["sequence"], h["type"], h["step"], h["snippet"]) for h in hits] == [
        (1, "thinking", 1, "«alpha» "), (2, "text_delta", 1, "«beta» "),
        (3, "text_delta", 2, "«gamma» ")]


def test_catch_up_rebuilds_the_block_a_stopped_host_left_open(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    chunks = Chunks()
    first = SqliteStorage(path)
    index = SearchIndex(first)
    index.add([chunks.make("tool_start", 1, toolName="t", toolCallId="a", input={"q": "x"}),
               chunks.make("text_delta", 1, delta="the walrus "),
               chunks.make("text_delta", 1, delta="sleeps")])
    first.close()  # the host stops with "the walrus sleeps" still open

    again = SqliteStorage(path)
    index = SearchIndex(again)
    index.catch_up(chunks.read)
    index.add([chunks.make("checkpoint", 1)])
    hits = index.search("walrus", 10)
    assert [(h["sequence"], h["type"]) for h in hits] == [(2, "text_delta")]
    assert len(index.search("t", 10)) == 1  # the tool row is not indexed twice
    again.close()


@pytest.mark.parametrize("query", ['"unclosed', "AND", "col:otters", "otters'"])
def test_a_query_fts5_cannot_parse_raises_with_the_reason(sql: SqliteStorage,
                                                            query: str) -> None:
    index = SearchIndex(sql)
    with pytest.raises(SearchQueryError) as info:
        index.search(query, 10)
    assert str(info.value)  # the reason SQLite gave
    assert index.search("fine", 10) == []  # the index is still usable
