"""Smoke test for the browser harness: real JupyterLab, real kernel, real widgets."""

from __future__ import annotations

import sys
import time

import pytest
from playwright.sync_api import expect

from .lab import (
    cell_output_locator,
    open_notebook,
    run_cell,
    screenshot,
    visible_dialogs,
    wait_for_output,
)

pytestmark = pytest.mark.browser

WIDGET_CELL = (
    "import ipywidgets as w; "
    'b = w.Button(description="Click me"); '
    "out = w.Output(); "
    'b.on_click(lambda _: out.append_stdout("clicked\\n")); '
    "w.VBox([b, out])"
)


def test_lab_smoke(jupyter_server, make_notebook, page):
    t0 = time.monotonic()
    path = make_notebook(
        "smoke.ipynb",
        [
            "print(6*7)",
            WIDGET_CELL,
            "import sys; print('PREFIX=' + sys.prefix)",
        ],
    )
    open_notebook(page, jupyter_server, path)
    t_open = time.monotonic() - t0

    run_cell(page, 0)
    wait_for_output(page, 0, "42")

    run_cell(page, 1)
    button = cell_output_locator(page, 1).get_by_role("button", name="Click me")
    expect(button).to_be_visible(timeout=60_000)  # widget manager loaded and rendered the view
    button.click()
    wait_for_output(page, 1, "clicked", timeout=60_000)

    # The kernel runs in the interpreter (venv) that runs pytest.
    run_cell(page, 2)
    wait_for_output(page, 2, f"PREFIX={sys.prefix}")

    assert visible_dialogs(page) == []
    shot = screenshot(page, "smoke.png")
    print(
        f"\nopen_notebook: {t_open:.2f}s, whole test body: {time.monotonic() - t0:.2f}s, "
        f"server startup: {jupyter_server.startup_seconds:.2f}s, screenshot: {shot}"
    )
