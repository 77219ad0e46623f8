"""The Durable Object runtime: one ``AgentServer`` per session, on ``SqlStorage``.

It runs unchanged in the kernel (``LocalNamespace``, sqlite files) and in a Cloudflare
Python Worker (``helix_lab.worker_bundle``). It imports nothing from IPython or Jupyter,
and uses no threads, subprocesses or files outside its storage. Besides the standard
library it needs pydantic, and anyio for cancel scopes (an interrupt cuts a model call
or a retry wait; a tool's timeout), which runs on Pyodide's event loop too.
"""

from ..errors import AgentNotFoundError
from .executor import Execution, RetryPolicy
from .hooks import AbortResult, CompleteContext, EndpointContext, ExecutionState, ServerHooks
from .http import Request, Response, error_response, json_response
from .namespace import LocalNamespace, LocalStub
from .registry import AgentFactoryContext, AgentRegistry, NamespaceAgents, default_registry
from .server import AgentServer, LLMAdapterContext, create_agent_server
from .sql import SqliteStorage, SqlStorage
from .state_store import DOStateStore
from .stream import DOStreamManager
from .usage import DOUsageStore

__all__ = [
    "AbortResult",
    "AgentFactoryContext",
    "AgentNotFoundError",
    "AgentRegistry",
    "AgentServer",
    "CompleteContext",
    "DOStateStore",
    "DOStreamManager",
    "DOUsageStore",
    "EndpointContext",
    "Execution",
    "ExecutionState",
    "LLMAdapterContext",
    "LocalNamespace",
    "LocalStub",
    "NamespaceAgents",
    "Request",
    "Response",
    "RetryPolicy",
    "ServerHooks",
    "SqlStorage",
    "SqliteStorage",
    "create_agent_server",
    "default_registry",
    "error_response",
    "json_response",
]
