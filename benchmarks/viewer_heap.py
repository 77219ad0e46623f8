"""Figure 13: the browser's JS heap with a 100,000-chunk session open in AgentView.

The measurement is the browser test ``tests/browser/test_viewer_scale.py``, run as it is
with a 10,000-step session (~100,000 chunks, 10,000 checkpoints): real JupyterLab in
headless Chromium, one page per session, the view drawn with its Checkpoints tab open;
the heap is Chromium's used JS heap after a forced garbage collection (DevTools protocol,
through Playwright). The test also checks that the long view draws a bounded number of
items and pages older ones in. Baseline: the same page with a 10-step session (~100
chunks), same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .common import REPO, Context, Figure, Ratio

GOAL = 2.0


def measure(ctx: Context) -> Figure:
    out = ctx.path("viewer-heap") / "heap.json"
    steps = ctx.n(10_000, 300)
    ctx.log(f"pytest tests/browser/test_viewer_scale.py ({steps:,} steps)")
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/browser/test_viewer_scale.py", "-q",
         "-p", "no:cacheprovider"], cwd=REPO,
        env={**os.environ, "HELIX_VIEWER_STEPS": str(steps), "HELIX_VIEWER_HEAP_ARTIFACT": str(out)},
        capture_output=True, text=True)
    if test.returncode != 0 or not out.exists():
        raise RuntimeError(f"the browser test failed:\n{test.stdout[-3000:]}{test.stderr[-2000:]}")
    data = json.loads(out.read_text())
    long, short, chunks = data["long"], data["short"], data["chunks"]
    ratio = long["after"] / short["after"]
    grown = (long["after"] - long["before"]) / max(short["after"] - short["before"], 1)
    mib = 2**20
    return Figure(
        number=13, title="The viewer at scale: the browser's JS heap",
        measures=f"Chromium's used JS heap (after a forced GC) with a session of "
        f"{chunks['long']:,} chunks open in AgentView in JupyterLab, Checkpoints tab shown.",
        baseline=f"The same page with a session of {chunks['short']:,} chunks, same run.",
        ratios=[Ratio.at_most(f"JS heap with {chunks['long']:,} chunks ÷ with {chunks['short']:,}",
                              ratio, f"{ratio:.2f}", GOAL),
                Ratio("growth of the heap while opening: long ÷ short", grown,
                      f"{grown:.2f}")],
        raw=[("JS heap, long session", f"{long['after'] / mib:.1f} MiB "
              f"({long['before'] / mib:.1f} MiB before the view)"),
             ("JS heap, short session", f"{short['after'] / mib:.1f} MiB "
              f"({short['before'] / mib:.1f} MiB before the view)"),
             ("transcript items drawn", f"{long['items']} (long), {short['items']} (short)")],
        notes=["Most of the heap is JupyterLab itself; the second ratio compares only what "
               "opening the view added (noisy: a few MiB either way)."],
    )
