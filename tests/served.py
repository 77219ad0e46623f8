"""``helix serve`` as a real child process on 127.0.0.1, for the remote test tiers.

Shared by ``test_serve_remote`` (the CPython engine) and ``test_pyodide`` (``--engine
pyodide``). Agents come from :mod:`e2e_scenario` unless told otherwise.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["ROOT", "TESTS", "TOKEN", "Served"]

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TOKEN = "helix-test-token-5f0c1e9a"


class Served:
    """``helix serve`` in a subprocess, on 127.0.0.1."""

    def __init__(self, storage: Path, *, agents: str | None = "e2e_scenario",
                 token: str | None = TOKEN, port: int = 0, engine: str | None = None,
                 approach: str | None = None, start_timeout: float = 60,
                 environ: dict[str, str] | None = None) -> None:
        self.storage, self.agents, self.token, self.port = storage, agents, token, port
        self.engine, self.approach, self.start_timeout = engine, approach, start_timeout
        self.environ = environ or {}
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.log = storage.parent / f"{storage.name}.stderr"

    def start(self) -> Served:
        env = {k: v for k, v in os.environ.items() if k not in ("HELIX_TOKEN",)}
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT)])
        env.update(self.environ)
        if self.token is not None:
            env["HELIX_TOKEN"] = self.token
        command = [sys.executable, "-m", "helix_lab.cli", "serve", "--port", str(self.port),
                   "--storage", str(self.storage)]
        if self.agents:
            command += ["--agents", self.agents]
        if self.engine:
            command += ["--engine", self.engine]
        if self.approach:
            command += ["--approach", self.approach]
        self.process = subprocess.Popen(command, env=env, cwd=str(self.storage.parent),
                                        stdout=subprocess.PIPE, stderr=self.log.open("a"),
                                        text=True)
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise RuntimeError(f"helix serve exited: {self.log.read_text()}") from None
                continue
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                return self
        raise RuntimeError(f"helix serve did not announce itself in {self.start_timeout} s")

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)
            self.lines.put(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def object_files(self) -> set[str]:
        return {p.name for p in self.storage.glob("*.sqlite")}
