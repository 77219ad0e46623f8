"""helix_lab's benchmarks: ``make bench`` (``python -m benchmarks``) writes ``RESULTS.md``.

Every figure is a ratio of two measurements taken in the same run, so that the figures
mean something on any machine:

1. ``steps``        per-step overhead against LangGraph + SqliteSaver, and its flatness
2. ``chunks``       text-delta chunks/s stored and streamed, against raw sqlite3 inserts
3. ``replay``       streaming a long session from sequence 0, against one SQL query
4. ``time_travel``  resuming from step 10 against resuming from step 10,000
5. ``widget``       comm messages/s an AgentView sends while chunks arrive at 10,000/s
6. ``storage``      bytes on disk per step, against LangGraph + SqliteSaver
7. ``startup``      ``import helix_lab`` and ``%load_ext helix_lab`` against ``import json``
8. ``load``         200 concurrent sessions on ``helix serve``, against the same in process
9. ``inspector``    opening step 10,000 of a session against opening step 10
10. ``search``      chunk writes with the full-text index against without it
11. ``workflows``   recovery after a crash at step k against one memoized-step lookup, and
    the Workflows approach's time per step against the Durable Object approach's
12. ``viewer``      opening a 100k-chunk session in AgentView against a 100-chunk one, and
                    comm bytes/s at sequence 100,000 against at sequence 100
13. ``viewer_heap`` the browser's JS heap with the 100k session open against the 100 one

``python -m benchmarks --quick`` runs small versions of all of them (used by a smoke test;
its numbers are not meaningful).
"""

BENCHMARKS = ("steps", "chunks", "replay", "time_travel", "widget", "storage", "startup", "load",
              "inspector", "search", "workflows", "viewer", "viewer_heap")
