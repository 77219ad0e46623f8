"""Helpers for driving a real JupyterLab 4 page with Playwright (sync API).

Everything here works on a ``playwright.sync_api.Page`` that shows a JupyterLab
started by the ``jupyter_server`` fixture (see ``conftest.py``).

The server is started with ``--LabApp.expose_app_in_browser=True``, so the page
has ``window.jupyterapp``. The helpers use it for the parts that are racy to
read from the DOM: whether the kernel is ready and idle, and which panel shows
which file. Running a cell goes through the UI by default: click the cell's
input prompt, then press Ctrl+Enter. Results are always read from the
rendered DOM.

Typical use::

    path = write_notebook(server, "t.ipynb", ["print(6*7)"])
    open_notebook(page, server, path)
    run_cell(page, 0)
    wait_for_output(page, 0, "42")
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]

# Chromium flags required/recommended in this sandbox (root, no GPU, no net).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]

# Lab settings defaults we force for every test server. Written to
# <JUPYTER_CONFIG_DIR>/labconfig/default_setting_overrides.json, read by
# jupyterlab_server at startup (no writes into the venv needed).
LAB_SETTING_OVERRIDES: dict[str, dict[str, Any]] = {
    # No "Would you like to receive official Jupyter news?" toast, no update check.
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    # JupyterLab 4 virtualises the notebook by default ("contentVisibility" in 4.6);
    # "none" keeps every cell attached to the DOM so locators can reach them.
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}

DEFAULT_TIMEOUT_MS = 60_000
STARTUP_TIMEOUT_S = float(os.environ.get("HELIX_LAB_STARTUP_TIMEOUT", "60"))


# --------------------------------------------------------------------------- artifacts


def artifacts_dir() -> Path:
    """``$HELIX_ARTIFACTS_DIR`` or ``<repo>/artifacts/browser`` (created on demand)."""
    d = Path(os.environ.get("HELIX_ARTIFACTS_DIR") or REPO_ROOT / "artifacts" / "browser")
    d.mkdir(parents=True, exist_ok=True)
    return d


def screenshot(page, name: str, *, full_page: bool = False) -> Path:
    """Save a PNG of ``page`` into the artifacts dir and return its path."""
    if not name.endswith(".png"):
        name += ".png"
    path = artifacts_dir() / _safe_name(name)
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:180]


# --------------------------------------------------------------------------- server


@dataclass
class LabServer:
    """A running ``python -m jupyterlab`` subprocess (what ``jupyter_server`` yields)."""

    url: str  # http://127.0.0.1:<port>  (no trailing slash, base_url "/")
    token: str
    root_dir: Path  # ServerApp.root_dir: notebook paths are relative to this
    port: int
    log_path: Path
    base_dir: Path  # tmp dir holding config/runtime/data/settings dirs
    proc: subprocess.Popen | None = field(default=None, repr=False)
    startup_seconds: float = 0.0

    def lab_url(self, path: str = "", *, workspace: str | None = None) -> str:
        """URL of the Lab UI, optionally opening ``path`` (relative to root_dir)."""
        prefix = f"{self.url}/lab"
        if workspace:
            prefix += f"/workspaces/{quote(workspace)}"
        if path:
            prefix += "/tree/" + quote(str(path).lstrip("/"))
        return f"{prefix}?token={self.token}"

    def api(self, method: str, endpoint: str, body: Any = None, timeout: float = 10) -> Any:
        """Call the REST API (``endpoint`` like ``/api/sessions``); returns parsed JSON or None."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{endpoint}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def is_up(self) -> bool:
        try:
            self.api("GET", "/api/status", timeout=2)
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def shutdown_all_kernels(self) -> None:
        """Delete every session and kernel (used between tests for isolation)."""
        try:
            for s in self.api("GET", "/api/sessions") or []:
                try:
                    self.api("DELETE", f"/api/sessions/{s['id']}")
                except Exception:
                    pass
            for k in self.api("GET", "/api/kernels") or []:
                try:
                    self.api("DELETE", f"/api/kernels/{k['id']}")
                except Exception:
                    pass
        except Exception:
            pass

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def dump_log(self, name: str = "jupyter-server.log") -> Path:
        dest = artifacts_dir() / name
        try:
            shutil.copyfile(self.log_path, dest)
        except OSError:
            dest.write_text(self.log_text())
        return dest

    def stop(self, timeout: float = 15) -> None:
        """Clean shutdown via /api/shutdown (also stops kernels), then SIGTERM/SIGKILL the group."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            self.api("POST", "/api/shutdown", timeout=5)
        except Exception:
            pass
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)  # started with start_new_session=True
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(base: Path) -> dict[str, str]:
    # Drop inherited Jupyter configuration, then isolate everything user-level.
    # Kernel specs and lab extensions are still found: jupyter_path() always
    # includes <sys.prefix>/share/jupyter, and inside a venv it comes first.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "lab-workspaces",
        "IPYTHONDIR": base / "ipython",
    }
    for key, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        env[key] = str(d)
    # Kernels inherit this env: make the repo importable (helix_lab is not
    # pip-installed) and put the venv first on PATH.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _write_lab_overrides(config_dir: Path, overrides: dict) -> None:
    # jupyterlab_server merges <each jupyter config dir>/labconfig/
    # default_setting_overrides.json into the schema defaults when it starts.
    d = config_dir / "labconfig"
    d.mkdir(parents=True, exist_ok=True)
    (d / "default_setting_overrides.json").write_text(json.dumps(overrides, indent=2))


def start_lab_server(
    base: Path,
    *,
    extra_args: list[str] | tuple[str, ...] = (),
    expose_app: bool = True,
    overrides: dict | None = None,
    attempts: int = 3,
) -> LabServer:
    """Start JupyterLab under ``base``; retry on a port race. Raises with the log tail on failure.

    ``overrides`` replaces LAB_SETTING_OVERRIDES; ``expose_app=False`` hides
    ``window.jupyterapp`` (the lab.py helpers then fall back to the DOM).
    """
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    env = _server_env(base)
    _write_lab_overrides(
        Path(env["JUPYTER_CONFIG_DIR"]), LAB_SETTING_OVERRIDES if overrides is None else overrides
    )
    last_error = ""
    for attempt in range(1, attempts + 1):
        port = _free_port()
        token = secrets.token_hex(24)
        log_path = base / f"jupyter-server-{attempt}.log"
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--allow-root",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",  # fail loudly instead of silently moving to port+1
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.expose_app_in_browser={expose_app}",  # window.jupyterapp for robust waits
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *extra_args,
        ]  # fmt: skip
        t0 = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(root),
                start_new_session=True,  # own process group: killpg at teardown
            )
        server = LabServer(
            url=f"http://127.0.0.1:{port}",
            token=token,
            root_dir=root,
            port=port,
            log_path=log_path,
            base_dir=base,
            proc=proc,
        )
        deadline = t0 + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if server.is_up():
                server.startup_seconds = time.monotonic() - t0
                return server
            time.sleep(0.1)
        exited = proc.poll() is not None
        server.stop()
        text = server.log_text()
        last_error = text[-4000:]
        dumped = server.dump_log(f"jupyter-server-startup-failure-{attempt}.log")
        if exited and ("already in use" in text or "Address already" in text):
            continue  # port race: another process grabbed the port
        why = (
            f"exited with code {proc.returncode}"
            if exited
            else f"not answering /api/status after {STARTUP_TIMEOUT_S}s"
        )
        raise RuntimeError(
            f"JupyterLab on port {port} {why}; log copied to {dumped}:\n{last_error}"
        )
    raise RuntimeError(f"JupyterLab failed to start after {attempts} attempts:\n{last_error}")


# --------------------------------------------------------------------------- notebooks on disk


def write_notebook(
    server_or_root: LabServer | Path | str,
    path: str,
    cells: Iterable[str | tuple[str, str] | Any],
    *,
    kernel_name: str = "python3",
    display_name: str = "Python 3 (ipykernel)",
) -> str:
    """Write a notebook with ``cells`` under the server root; return ``path``.

    ``cells`` items: a str (code cell), a ``("markdown"|"code"|"raw", source)``
    tuple, or an nbformat cell. The kernelspec metadata is always set so Lab
    never shows the "Select Kernel" dialog.
    """
    import nbformat

    root = (
        server_or_root.root_dir if isinstance(server_or_root, LabServer) else Path(server_or_root)
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": kernel_name,
        "display_name": display_name,
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    makers = {
        "code": nbformat.v4.new_code_cell,
        "markdown": nbformat.v4.new_markdown_cell,
        "raw": nbformat.v4.new_raw_cell,
    }
    for c in cells:
        if isinstance(c, str):
            nb.cells.append(nbformat.v4.new_code_cell(c))
        elif isinstance(c, tuple):
            kind, src = c
            nb.cells.append(makers[kind](src))
        else:
            nb.cells.append(c)
    full = root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(full))
    return path


# --------------------------------------------------------------------------- page helpers

# JS: id of the main-area notebook panel that shows `path` (or the current one if null).
_FIND_PANEL_JS = """
(path) => {
  const app = window.jupyterapp;
  if (app) {
    const ws = Array.from(app.shell.widgets('main'));
    let w = null;
    if (path) {
      w = ws.find(x => x.context && x.context.path === path && x.node.classList.contains('jp-NotebookPanel'));
    } else {
      w = app.shell.currentWidget;
      if (!(w && w.node.classList.contains('jp-NotebookPanel'))) {
        w = ws.find(x => x.node.classList.contains('jp-NotebookPanel') && x.isVisible) || null;
      }
    }
    return w ? w.id : null;
  }
  // DOM fallback (no exposed app): match the tab title "Path: <path>".
  const tabs = Array.from(document.querySelectorAll('#jp-main-dock-panel .lm-TabBar-tab'));
  for (const t of tabs) {
    const title = t.getAttribute('title') || '';
    const ok = path ? title.split('\\n').some(l => l.trim() === 'Path: ' + path)
                    : t.classList.contains('lm-mod-current');
    const el = t.dataset.id && document.getElementById(t.dataset.id);
    if (ok && el && el.classList.contains('jp-NotebookPanel')) return t.dataset.id;
  }
  return null;
}
"""

# JS: is the kernel of panel `id` started, connected and idle?
_KERNEL_IDLE_JS = """
(id) => {
  const panel = document.getElementById(id);
  if (!panel) return false;
  const app = window.jupyterapp;
  if (app) {
    const w = Array.from(app.shell.widgets('main')).find(x => x.id === id);
    const sc = w && w.sessionContext;
    const k = sc && sc.session && sc.session.kernel;
    return !!(sc && sc.isReady && k && k.status === 'idle' && k.connectionStatus === 'connected');
  }
  // DOM fallback. NB: the toolbar indicator reports "idle" while the kernel is
  // still "Initializing" (no kernel yet), so also require a kernel name and the
  // status bar's "<Kernel> | Idle" text.
  const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const name = panel.querySelector('.jp-KernelName');
  const sb = Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
      .map(e => e.textContent.trim()).find(t => / \\| /.test(t));
  return !!(ind && ind.dataset.status === 'idle' && name && name.textContent.trim()
            && !/no kernel/i.test(name.textContent) && sb && /\\| Idle$/.test(sb)
            && !/^No Kernel/.test(sb));
}
"""


def _panel_id(page, path: str | None = None) -> str:
    pid = page.evaluate(_FIND_PANEL_JS, path)
    if not pid:
        raise AssertionError(f"no open notebook panel for path={path!r}")
    return pid


def notebook_panel(page, path: str | None = None):
    """Locator of the ``.jp-NotebookPanel`` for ``path`` (default: current notebook)."""
    return page.locator(f"#{_panel_id(page, path)}")


def visible_dialogs(page) -> list[str]:
    """Texts of open modal dialogs (kernel selection, build prompts, errors...)."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText.trim())"
    )


def open_notebook(
    page,
    server: LabServer,
    path: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_MS,
    workspace: str | None = None,
    fail_on_dialog: bool = True,
):
    """Open ``path`` (relative to ``server.root_dir``) and wait for an idle kernel.

    Writes nothing. Uses a fresh, uniquely named workspace by default so the
    layout of earlier tests (other open notebooks, other kernels) is not restored.
    Returns the notebook panel locator.
    """
    path = str(path).lstrip("/")
    workspace = workspace or f"t-{uuid.uuid4().hex[:10]}"
    page.goto(server.lab_url(path, workspace=workspace), wait_until="domcontentloaded")
    handle = page.wait_for_function(_FIND_PANEL_JS, arg=path, timeout=timeout)
    pid = handle.json_value()
    panel = page.locator(f"#{pid}")
    panel.locator(".jp-Notebook").wait_for(state="visible", timeout=timeout)
    try:
        page.wait_for_function(_KERNEL_IDLE_JS, arg=pid, timeout=timeout, polling=100)
    except Exception as exc:
        raise AssertionError(
            f"kernel for {path!r} never became idle; dialogs={visible_dialogs(page)!r}"
        ) from exc
    if fail_on_dialog:
        dialogs = visible_dialogs(page)
        if dialogs:
            raise AssertionError(
                f"unexpected JupyterLab dialog(s) after opening {path!r}: {dialogs!r}"
            )
    return panel


def wait_for_kernel_idle(
    page, path: str | None = None, timeout: float = DEFAULT_TIMEOUT_MS
) -> None:
    page.wait_for_function(_KERNEL_IDLE_JS, arg=_panel_id(page, path), timeout=timeout, polling=100)


def cells(page, path: str | None = None):
    """Locator of all notebook cells (in order)."""
    return notebook_panel(page, path).locator(".jp-Notebook .jp-Notebook-cell")


def cell_locator(page, index: int, path: str | None = None):
    return cells(page, path).nth(index)


def cell_output_locator(page, index: int, path: str | None = None):
    """Locator of cell ``index``'s output area (one element; contains every output)."""
    return cell_locator(page, index, path).locator(".jp-Cell-outputArea")


def cell_outputs(page, index: int, path: str | None = None):
    """Locator of the individual ``.jp-OutputArea-output`` nodes of cell ``index``."""
    return cell_output_locator(page, index, path).locator(".jp-OutputArea-output")


def cell_prompt(page, index: int, path: str | None = None) -> str:
    return cell_locator(page, index, path).locator(".jp-InputPrompt").inner_text().strip()


def add_code_cell(page, source: str, path: str | None = None) -> int:
    """Append a code cell with ``source`` to the notebook in the page; return its index.

    Prefer writing cells to disk with :func:`write_notebook`. This uses the
    notebook model through ``window.jupyterapp``, which avoids CodeMirror
    auto-indent and bracket auto-closing.
    """
    pid = _panel_id(page, path)
    idx = page.evaluate(
        """([id, src]) => {
            const w = Array.from(window.jupyterapp.shell.widgets('main')).find(x => x.id === id);
            const nb = w.content; const n = nb.model.sharedModel.cells.length;
            nb.model.sharedModel.insertCell(n, {cell_type: 'code', source: src});
            return n;
        }""",
        [pid, source],
    )
    cell_locator(page, idx, path).wait_for(state="attached")
    return idx


def run_cell(
    page,
    index_or_code: int | str,
    *,
    path: str | None = None,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT_MS,
) -> int:
    """Run one cell like a user: click its input prompt, press Ctrl+Enter.

    ``index_or_code``: a cell index, or source code for a new cell appended at
    the end. Ctrl+Enter is ``notebook:run-cell`` (no advance, no new cell).
    With ``wait``, returns once the prompt shows a fresh ``[N]:``, that is once
    the kernel has replied. Outputs that arrive later, such as widget
    callbacks, need :func:`wait_for_output`. Returns the cell index.
    """
    index = (
        add_code_cell(page, index_or_code, path)
        if isinstance(index_or_code, str)
        else index_or_code
    )
    cell = cell_locator(page, index, path)
    cell.scroll_into_view_if_needed()
    before = cell_prompt(page, index, path)
    prompt = cell.locator(".jp-InputPrompt")
    prompt.click()
    # Make sure this cell is the active one before sending the shortcut.
    page.wait_for_function(
        "(el) => el.classList.contains('jp-mod-active')", arg=cell.element_handle(), timeout=60_000
    )
    page.keyboard.press("Control+Enter")
    if wait:
        wait_for_cell_executed(page, index, previous_prompt=before, path=path, timeout=timeout)
    return index


def run_all_cells(page, *, path: str | None = None, timeout: float = DEFAULT_TIMEOUT_MS) -> None:
    """Run all cells via the Run menu command and wait until every code cell has a count."""
    pid = _panel_id(page, path)
    page.evaluate(
        """(id) => { const app = window.jupyterapp; app.shell.activateById(id);
                     app.commands.execute('notebook:run-all-cells'); }""",
        pid,
    )
    page.wait_for_function(
        """(id) => Array.from(document.querySelectorAll('#' + id + ' .jp-Notebook-cell.jp-CodeCell .jp-InputPrompt'))
                  .every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()))""",
        arg=pid,
        timeout=timeout,
        polling=100,
    )


def wait_for_cell_executed(
    page,
    index: int,
    *,
    previous_prompt: str | None = None,
    path: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_MS,
) -> str:
    """Wait until cell ``index`` shows ``[N]:`` (not ``[*]:``) different from ``previous_prompt``."""
    cell = cell_locator(page, index, path)
    try:
        page.wait_for_function(
            """([el, prev]) => { const p = el.querySelector('.jp-InputPrompt');
                                  const t = p ? p.textContent.trim() : '';
                                  return /^\\[\\d+\\]:$/.test(t) && t !== prev; }""",
            arg=[cell.element_handle(), previous_prompt],
            timeout=timeout,
            polling=100,
        )
    except Exception as exc:
        raise AssertionError(
            f"cell {index} did not finish executing (prompt={cell_prompt(page, index, path)!r}, "
            f"outputs={_outputs_text(page, index, path)!r}, dialogs={visible_dialogs(page)!r})"
        ) from exc
    return cell_prompt(page, index, path)


def _outputs_text(page, index: int, path: str | None = None) -> str:
    try:
        return cell_output_locator(page, index, path).inner_text(timeout=2_000)
    except Exception:
        return "<no output area>"


def wait_for_output(
    page,
    cell_index: int,
    text: str | re.Pattern,
    timeout: float = DEFAULT_TIMEOUT_MS,
    *,
    path: str | None = None,
):
    """Wait until cell ``cell_index``'s output area contains ``text`` (str or regex).

    Returns the output-area locator. On timeout raises AssertionError with the
    actual output text (tracebacks included).
    """
    from playwright.sync_api import expect

    loc = cell_output_locator(page, cell_index, path)
    try:
        expect(loc).to_contain_text(text, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(
            f"cell {cell_index}: {text!r} not in output within {timeout} ms; "
            f"output was: {_outputs_text(page, cell_index, path)!r}"
        ) from exc
    return loc


# --------------------------------------------------------------------------- helix_lab


def run_agent_notebook(page, server: LabServer, path: str, agent: str, run: str):
    """Write and open the notebook ``path`` of three cells: ``%load_ext helix_lab``,
    ``agent`` (which selects its model with ``%helix llm scripted script``) and ``run`` (a
    ``%%helix_agent`` cell), and run them in order. The run cell returns at once, as the run
    is a task on the kernel's loop. Returns the locator of its AgentView, once visible."""
    from playwright.sync_api import expect

    write_notebook(server, path, ["%load_ext helix_lab", agent, run])
    open_notebook(page, server, path)
    run_cell(page, 0)
    wait_for_output(page, 0, "helix_lab 0.1.0")
    run_cell(page, 1)
    wait_for_output(page, 1, "model: scripted (script)")
    run_cell(page, 2)
    view = cell_output_locator(page, 2).locator(".helix-agent-view")
    expect(view).to_be_visible(timeout=DEFAULT_TIMEOUT_MS)
    return view


__all__: Sequence[str] = [
    "CHROMIUM_ARGS",
    "LAB_SETTING_OVERRIDES",
    "LabServer",
    "add_code_cell",
    "artifacts_dir",
    "cell_locator",
    "cell_output_locator",
    "cell_outputs",
    "cell_prompt",
    "cells",
    "notebook_panel",
    "open_notebook",
    "run_agent_notebook",
    "run_all_cells",
    "run_cell",
    "screenshot",
    "start_lab_server",
    "visible_dialogs",
    "wait_for_cell_executed",
    "wait_for_kernel_idle",
    "wait_for_output",
    "write_notebook",
]
