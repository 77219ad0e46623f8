"""The AgentView's approval panel and step inspector in real JupyterLab: a run pauses at a
risky tool call, the arguments are edited in the panel and Approve is clicked, the run
finishes with exactly those arguments, and a click on a step in the timeline opens it.

Screenshots go to the artifacts dir: ``debugging-1-paused.png`` to ``debugging-3-inspector.png``.
"""

from __future__ import annotations

import pytest
from notebook_agents import MAILER
from playwright.sync_api import expect

from .lab import run_agent_notebook, screenshot, visible_dialogs

pytestmark = pytest.mark.browser

MAIL_AGENT = MAILER + '''
def plan(request):
    results = tool_results(request)
    if not results:
        return Turn(text="I will email Bob. ",
                    tool_calls=[call("send_email", to="bob@example.com", subject="Friday")])
    return Turn(text="Finished: " + results[0])

script = ScriptedLLM([plan], loop=True)
%helix llm scripted script
'''

RUN_CELL = "%%helix_agent mailer --session d1\nEmail Bob about Friday."


def test_approve_edited_arguments_and_open_a_step(jupyter_server, page, artifacts) -> None:
    view = run_agent_notebook(page, jupyter_server, "debugging_view.ipynb", MAIL_AGENT,
                              RUN_CELL)
    badge = view.locator(".hx-badge")
    panel = view.locator(".helix-approvals")

    # -- paused: the panel shows the call with its arguments, editable ----------------------
    expect(badge).to_have_text("paused", timeout=60_000)
    expect(panel).to_contain_text("send_email", timeout=60_000)
    editor = panel.locator(".helix-approval-input textarea")
    expect(editor).to_have_value('{\n "to": "bob@example.com",\n "subject": "Friday"\n}')
    expect(view.get_by_role("button", name="Resume")).to_be_disabled()
    view.scroll_into_view_if_needed()
    screenshot(page, "debugging-1-paused")

    # -- edit the arguments, click Approve: the run finishes with exactly those -------------
    editor.fill('{"to": "robert@example.com", "subject": "Friday, 10am"}')
    panel.get_by_role("button", name="Approve").click()
    expect(badge).to_have_text("completed", timeout=60_000)
    stream = view.locator(".hx-stream")
    expect(stream).to_contain_text("Finished: sent to robert@example.com: Friday, 10am")
    expect(stream).to_contain_text("send_email approved with edits")
    expect(panel.locator("textarea")).to_have_count(0)
    screenshot(page, "debugging-2-approved")

    # -- click step 1 in the timeline: the inspector opens it --------------------------------
    view.get_by_role("tab", name="Timeline").click()
    view.locator(".helix-step-picker").get_by_role("button", name="1", exact=True).click()
    inspector = view.locator(".helix-step-view")
    expect(inspector).to_contain_text("step 1", timeout=60_000)
    expect(inspector).to_contain_text("Email Bob about Friday.")  # what the model was sent
    expect(inspector).to_contain_text("robert@example.com")  # what ran, as approved
    expect(inspector).to_contain_text("model asked")  # beside what the model asked for
    expect(view.locator(".helix-result-editor textarea")).to_have_value(
        "sent to robert@example.com: Friday, 10am")
    view.scroll_into_view_if_needed()
    screenshot(page, "debugging-3-inspector")

    assert visible_dialogs(page) == []
    for name in ("debugging-1-paused", "debugging-2-approved", "debugging-3-inspector"):
        assert (artifacts / f"{name}.png").stat().st_size > 10_000
