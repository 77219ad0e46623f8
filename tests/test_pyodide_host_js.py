"""The Pyodide host's JavaScript parts, tested on their own with Node's test runner.

``tests/js/*.test.mjs`` check ``helix_lab/pyodide_host/sql.mjs`` (ctx.storage on SQLite's
WebAssembly build) and ``workerd.mjs`` (WebSocketPair, Response, Durable Object
namespaces) directly, where the end-to-end Pyodide tier only sees what the bundle happens
to use.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helix_lab.pyodide_host import home, install

JS_TESTS = sorted((Path(__file__).resolve().parent / "js").glob("*.test.mjs"))


@pytest.mark.parametrize("script", JS_TESTS, ids=[p.name for p in JS_TESTS])
def test_host_module(script: Path) -> None:
    install()  # SQLite wasm, pinned and cached
    node = shutil.which("node")
    assert node, "Node.js 20+ is needed (make test installs the rest)"
    done = subprocess.run([node, "--test", "--test-reporter=tap", str(script)],
                          env={"HELIX_NODE_MODULES": str(home() / "node" / "node_modules"),
                               "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout, done.stdout[-2000:]
