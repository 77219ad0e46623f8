"""The notebook widgets: ``AgentView`` and the pure pieces it is drawn from."""

from .agent_view import AgentView
from .view_state import ViewState, allowed_actions

__all__ = ["AgentView", "ViewState", "allowed_actions"]
