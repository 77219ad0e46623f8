"""``helix serve`` as a child process of the notebook, for ``%helix serve``.

The server gets a token from ``HELIX_TOKEN``; when the variable is unset a random one is
made and put in this process's environment, so ``%helix use URL --token-env HELIX_TOKEN``
works next without the token ever being shown. The child is stopped when the kernel exits.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = ["BackgroundServer", "start_background_server"]

READY_TIMEOUT = 30.0


@dataclass
class BackgroundServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Popen returns at once; only the waiting for readiness needs to be async."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy())


async def start_background_server(*, port: int = 8787, storage: str | None = None,
                                  agents: str | None = None) -> BackgroundServer:
    """Start ``helix serve`` on 127.0.0.1 and wait until ``/health`` answers."""
    import httpx

    if not _port_free(port):
        raise UserError(f"Port {port} on 127.0.0.1 is in use; pick another with --port.")
    if not os.environ.get("HELIX_TOKEN"):
        os.environ["HELIX_TOKEN"] = secrets.token_urlsafe(24)
    storage = storage or os.path.join(".helix", "serve")
    log_path = Path(storage).parent / f"serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "helix_lab.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--storage", storage]
    if agents:
        command += ["--agents", agents]
    process = _spawn(command, log_path)
    server = BackgroundServer(f"http://127.0.0.1:{port}", process, log_path)
    atexit.register(server.stop)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=2.0) as client:
        while loop.time() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-600:]
                raise UserError(f"helix serve exited with code {process.returncode}:\n{tail}")
            try:
                if (await client.get(server.url + "/health")).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    server.stop()
    raise UserError(f"helix serve did not answer within {READY_TIMEOUT:g} s; see {log_path}.")
