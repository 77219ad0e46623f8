"""The benchmarks run end to end (``python -m benchmarks --quick``) and report every figure.

No timing is asserted here: the quick workloads are too small for their numbers to mean
anything, and timings belong in ``benchmarks/RESULTS.md``, not in pass/fail tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {
    1: "Per-step overhead vs LangGraph",
    2: "Chunk write throughput",
    3: "Replay from sequence 0",
    4: "Time travel",
    5: "Widget under a fast stream",
    6: "Storage growth",
    7: "Start-up",
    8: "Load: 200 concurrent sessions",
    9: "Step inspector",
    10: "Full-text search: the index's cost to chunk writes",
    11: "Workflows: recovery and per-step cost",
    12: "The viewer at scale: opening a long session, and comm traffic",
    13: "The viewer at scale: the browser's JS heap",
}


@pytest.mark.timeout(600)
def test_quick_benchmarks_write_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = out.read_text()
    assert "Quick run" in text
    for number, title in FIGURES.items():
        assert f"## {number}. {title}" in text, f"figure {number} is missing"
        section = text.split(f"## {number}. {title}", 1)[1].split("\n## ", 1)[0]
        assert "| Raw measurement | Value |" in section and "| Ratio | Value | Goal |" in section
        # every ratio row carries a number
        rows = [line for line in section.splitlines() if line.startswith("| ")
                and re.search(r"÷", line)]
        assert rows and all(re.search(r"\| [0-9.]+", row) for row in rows), section
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert {int(m) for m in re.findall(r"^\| (\d+) \|", summary, re.M)} == set(FIGURES)
    for heading in ("## Fell short", "## Reproduce"):
        assert heading in text
    assert "ERROR" not in summary
    # the printed table lists every figure too
    assert {int(m) for m in re.findall(r"^(\d+) ", done.stdout, re.M)} == set(FIGURES)
