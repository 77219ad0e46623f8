"""The Worker bundle under real Pyodide, in Node, offline: installer and launcher of ``host.mjs``.

Cloudflare runs Python Workers on Pyodide. ``host.mjs`` loads npm ``pyodide`` in Node 20,
gives it what workerd would (``ctx.storage.sql`` on SQLite's WebAssembly build, Durable
Object namespaces, ``WebSocketPair``, the SDK's internal modules) and serves a ``helix
deploy`` bundle, with the real ``workers`` SDK, pydantic's wasm wheels and anyio, on
127.0.0.1::

    from helix_lab.pyodide_host import PyodideHost, build_bundle, install

    install()                                  # pinned npm packages and wheels, cached
    bundle = build_bundle("/tmp/w", "helix_lab.examples")
    host = PyodideHost(bundle, "/tmp/objects", token="...").start()
    print(host.url)                            # http://127.0.0.1:PORT
    host.stop()

``helix serve --engine pyodide`` does the same from the command line. Everything lives
under :func:`home` (``$HELIX_PYODIDE_HOME``; ``.ci/`` in a checkout; else
``~/.cache/helix_lab/pyodide``): ``node/node_modules`` and ``wheels/``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import UserError

__all__ = [
    "NPM_PACKAGES",
    "WHEELS",
    "WHEEL_PLATFORM",
    "WHEEL_PYTHON",
    "PyodideHost",
    "PyodideHostError",
    "build_bundle",
    "home",
    "install",
    "missing",
]

NPM_PACKAGES = {"pyodide": "314.0.8", "@sqlite.org/sqlite-wasm": "3.54.1-build1",
                "ws": "8.23.0"}
"""Pyodide 314 (Python 3.14) loads in Node 20; SQLite's own WebAssembly build backs
``ctx.storage.sql`` (with FTS5, as Durable Object SQLite; sql.js lacks it); ws serves
WebSockets."""
WHEELS = {"pydantic": "2.14.4", "pydantic_core": "2.50.5", "annotated_types": "0.8.0",
          "typing_extensions": "4.16.0", "typing_inspection": "0.4.5", "anyio": "4.16.0",
          "idna": "3.20"}
"""pydantic and anyio, with their dependencies; pydantic 2.14.4 pins pydantic-core 2.50.5,
whose wasm wheel exists for Pyodide 314's ABI. anyio and idna are pure Python."""
WHEEL_PLATFORM = "pyemscripten_2026_0_wasm32"
WHEEL_PYTHON = "3.14"

HOST_SCRIPT = Path(__file__).resolve().parent / "host.mjs"
START_TIMEOUT = 300.0
"""Only catches a hung start: Pyodide takes 5 to 20 s to load on a small machine."""
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class PyodideHostError(UserError):
    """The Pyodide host cannot be installed or started; the message names the fix."""


def home() -> Path:
    """Where the npm packages (``node/``) and the wheels (``wheels/``) are kept."""
    given = os.environ.get("HELIX_PYODIDE_HOME")
    if given:
        return Path(given).resolve()
    if (_PACKAGE_ROOT / "pyproject.toml").is_file():  # a checkout: next to wrangler
        return _PACKAGE_ROOT / ".ci"
    return Path.home() / ".cache" / "helix_lab" / "pyodide"


def _node_modules(root: Path) -> Path:
    return root / "node" / "node_modules"


def _wheel_files(root: Path) -> list[Path]:
    return sorted((root / "wheels").glob("*.whl"))


def _pinned_wheel(path: Path) -> bool:
    name, _, rest = path.name.partition("-")
    return WHEELS.get(name) == rest.partition("-")[0]


def missing(root: Path | None = None) -> list[str]:
    """The pinned packages not installed under ``root`` (``name==version``)."""
    root = root or home()
    absent = []
    for name, version in NPM_PACKAGES.items():
        manifest = _node_modules(root) / name / "package.json"
        found = re.search(r'"version":\s*"([^"]+)"', manifest.read_text()) if (
            manifest.is_file()) else None
        if found is None or found.group(1) != version:
            absent.append(f"{name}@{version}")
    present = {p.name.partition("-")[0] for p in _wheel_files(root) if _pinned_wheel(p)}
    absent += [f"{name}=={version}" for name, version in WHEELS.items() if name not in present]
    return absent


def _install_command_hint() -> str:
    return f"{sys.executable} -m helix_lab.pyodide_host install"


def install(root: Path | None = None, *, quiet: bool = True) -> list[str]:
    """Install what :func:`missing` lists (npm and PyPI only); returns what was installed."""
    root = root or home()
    todo = missing(root)
    npm_specs = [spec for spec in todo if "@" in spec]
    if npm_specs:
        npm = shutil.which("npm")
        if npm is None:
            raise PyodideHostError("npm was not found; install Node.js 20+ (it brings npm), "
                                   f"then run {_install_command_hint()}.")
        (root / "node").mkdir(parents=True, exist_ok=True)
        _run([npm, "install", "--no-audit", "--no-fund", "--save-exact", "--prefix",
              str(root / "node"), *npm_specs], quiet)
    if any("==" in spec for spec in todo):
        wheels = root / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        for stale in _wheel_files(root):
            if not _pinned_wheel(stale):
                stale.unlink()  # the host loads every wheel in the folder
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
              "--platform", WHEEL_PLATFORM, "--python-version", WHEEL_PYTHON, "--dest",
              str(wheels), *(f"{n}=={v}" for n, v in WHEELS.items())], quiet)
    left = missing(root)
    if left:
        raise PyodideHostError(f"Installing the Pyodide host left {', '.join(left)} missing "
                               f"under {root}; run {_install_command_hint()} to see why.")
    return todo


def _run(command: list[str], quiet: bool) -> None:
    done = subprocess.run(command, capture_output=quiet, text=True, check=False)
    if done.returncode != 0:
        tail = ((done.stderr or "") + (done.stdout or "")).strip().splitlines()[-3:]
        raise PyodideHostError(f"{Path(command[0]).name} failed ({' / '.join(tail) or 'exit '}"
                               f"{done.returncode}); check the network access to the registry.")


def build_bundle(out_dir: str | os.PathLike[str], agents: str) -> Path:
    """The Worker project ``helix deploy`` writes (``src/``, ``python_modules/``), in ``out_dir``."""
    from ..deploy import build_project

    return build_project(out_dir, agents=agents)


def _find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise PyodideHostError("node was not found; install Node.js 20+ to run the Worker "
                               "under Pyodide.")
    return node


class PyodideHost:
    """``host.mjs`` in a child process, serving ``bundle`` with objects stored in ``storage``.

    The child exits when this process does (it watches its stdin), so it is never left over.
    """

    def __init__(self, bundle: str | os.PathLike[str], storage: str | os.PathLike[str], *,
                 token: str, agents: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, root: Path | None = None,
                 environ: Mapping[str, str] | None = None,
                 stderr: IO[Any] | int | None = None) -> None:
        self.bundle = Path(bundle).resolve()
        self.storage = Path(storage).resolve()
        self.token, self.agents, self.host, self.port = token, agents, host, port
        self.root = root or home()
        self.environ = dict(os.environ if environ is None else environ)
        self.stderr = stderr
        self.process: subprocess.Popen[str] | None = None
        self.agent_types: list[str] = []
        self.boot_seconds = 0.0
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def command(self) -> list[str]:
        return [_find_node(), str(HOST_SCRIPT), "--bundle", str(self.bundle), "--storage",
                str(self.storage), "--modules", str(_node_modules(self.root)), "--wheels",
                str(self.root / "wheels"), "--host", self.host, "--port", str(self.port)]

    def start(self, timeout: float = START_TIMEOUT) -> PyodideHost:
        """Start the host and wait until it listens; raises :class:`PyodideHostError`."""
        absent = missing(self.root)
        if absent:
            raise PyodideHostError(f"The Pyodide host needs {', '.join(absent)} under "
                                   f"{self.root}; run {_install_command_hint()}.")
        env = {k: v for k, v in self.environ.items() if k not in ("HELIX_TOKEN",)}
        env["HELIX_TOKEN"] = self.token
        if self.agents:
            env["HELIX_AGENTS_MODULE"] = self.agents
        started = time.monotonic()
        self._lines = queue.Queue()  # a restart must not see the last process's end
        self.process = subprocess.Popen(self.command(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.stderr, env=env,
                                        text=True)
        threading.Thread(target=self._read, args=(self.process, self._lines),
                         daemon=True).start()
        deadline = started + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                code = self.process.wait()
                raise PyodideHostError(f"The Pyodide host exited with status {code} before it "
                                       "listened; its log says why.")
            if line.startswith("agents: "):
                self.agent_types = [t for t in line[len("agents: "):].split(", ") if t]
            found = re.match(r"listening on http://\S+:(\d+)$", line)
            if found:
                self.port = int(found.group(1))
                self.boot_seconds = time.monotonic() - started
                return self
        self.kill()
        raise PyodideHostError(f"The Pyodide host did not listen within {timeout:.0f} s.")

    @staticmethod
    def _read(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())
        lines.put(None)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self) -> None:
        """Ask the host to stop (SIGTERM), then make sure it has."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """End the host at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)
