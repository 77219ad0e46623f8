"""Fixtures that run real JupyterLab in real (headless) Chromium through Playwright.

Fixtures:
  jupyter_server (session)  A ``LabServer`` for ``python -m jupyterlab`` run
                            with sys.executable: url, token, root_dir, port,
                            log_path, startup_seconds. Config, runtime, data,
                            lab settings, workspaces and IPython dirs all live
                            in a tmp dir.
  make_notebook (function)  ``make_notebook(path, cells) -> path`` writes a
                            notebook into jupyter_server.root_dir.
  playwright_sync (module)  The started ``sync_playwright()`` object. Module
                            scope on purpose, see the comment at the fixture.
  browser (module)          Chromium from /usr/bin/chromium ($HELIX_CHROMIUM),
                            headless unless HELIX_HEADED=1. Playwright gives
                            each launch a fresh temp profile.
  context (function)        New incognito-like browser context, 1440x900.
  page (function)           Page in ``context``. If the test fails it saves
                            <test>-FAILED.png, <test>-console.log and
                            <test>-jupyter-server.log to the artifacts dir.
                            Afterwards it shuts down every kernel.
  artifacts (session)       Path to the artifacts dir: $HELIX_ARTIFACTS_DIR
                            or <repo>/artifacts/browser.

The page helpers are in ``tests/browser/lab.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from . import lab
from .lab import CHROMIUM_ARGS, DEFAULT_TIMEOUT_MS, LabServer, start_lab_server

CHROMIUM = os.environ.get("HELIX_CHROMIUM", "/usr/bin/chromium")
HEADED = os.environ.get("HELIX_HEADED", "") not in ("", "0", "false")
VIEWPORT = {"width": 1440, "height": 900}

_startup_times: list[float] = []

# An ``expect`` without its own timeout waits this long, not Playwright's 5 s: its deadline
# only catches a hang, never a slow redraw on a busy machine.
expect.set_options(timeout=DEFAULT_TIMEOUT_MS)


# --------------------------------------------------------------------------- reporting hooks


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_helix_rep_{rep.when}", rep)


def _test_failed(node) -> bool:
    return any(
        getattr(getattr(node, f"_helix_rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def pytest_terminal_summary(terminalreporter):
    if _startup_times:
        terminalreporter.write_line(
            "helix browser: JupyterLab server startup "
            + ", ".join(f"{t:.2f}s" for t in _startup_times)
        )


# --------------------------------------------------------------------------- server


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return lab.artifacts_dir()


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory, request) -> LabServer:
    server = start_lab_server(tmp_path_factory.mktemp("jupyterlab"))
    _startup_times.append(server.startup_seconds)
    try:
        specs = server.api("GET", "/api/kernelspecs")
        if "python3" not in specs.get("kernelspecs", {}):
            raise RuntimeError(
                "no 'python3' kernelspec visible to the test server; run "
                f"`{sys.executable} -m ipykernel install --sys-prefix`. Got: {list(specs['kernelspecs'])}"
            )
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            server.dump_log("jupyter-server.log")


@pytest.fixture
def make_notebook(jupyter_server):
    """``make_notebook(path, cells, **kw) -> path``: write a notebook into the server root."""

    def _make(path: str, cells, **kw) -> str:
        return lab.write_notebook(jupyter_server, path, cells, **kw)

    return _make


# --------------------------------------------------------------------------- browser


# Module scope, not session scope: while the sync Playwright driver is running,
# its asyncio loop counts as the *running* loop of the main thread. Any
# pytest-asyncio test that runs while it is alive fails with "Runner.run()
# cannot be called from a running event loop". Module scope stops it at the end
# of each browser test module. Do not put async tests in a module that uses
# these fixtures.
@pytest.fixture(scope="module")
def playwright_sync():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_sync):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (set HELIX_CHROMIUM)")
    # launch() always runs Chromium with a fresh temp --user-data-dir that
    # Playwright creates and deletes; Playwright rejects an explicit
    # --user-data-dir in args, which would need launch_persistent_context().
    b = playwright_sync.chromium.launch(
        executable_path=CHROMIUM, headless=not HEADED, args=CHROMIUM_ARGS
    )
    yield b
    b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, request):
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    pg.on("crash", lambda _: console.append("[crash] page crashed"))
    yield pg
    server = (
        request.getfixturevalue("jupyter_server")
        if "jupyter_server" in request.fixturenames
        else None
    )
    if _test_failed(request.node):
        name = lab._safe_name(request.node.name)
        try:
            lab.screenshot(pg, f"{name}-FAILED")
        except Exception as exc:  # page may have crashed
            console.append(f"[harness] failure screenshot failed: {exc}")
        (lab.artifacts_dir() / f"{name}-console.log").write_text("\n".join(console) + "\n")
        if server is not None:
            server.dump_log(f"{name}-jupyter-server.log")
    pg.close()
    if server is not None:
        server.shutdown_all_kernels()
