"""The Cloudflare Python Worker that serves helix_lab agents, and its local stand-in.

- :mod:`.entry`: ``Default`` (the Worker's front door: bearer auth and routing through
  :func:`helix_lab.runtime.gateway.route`) and ``HelixAgentServer`` (the Durable Object
  running the same ``AgentServer`` as the kernel, over ``ctx.storage.sql``);
- :mod:`.fetch_llm`: Claude over the Messages API through the Worker's ``fetch``;
- :mod:`.standin`: a CPython stand-in for the ``workers`` runtime, used by ``helix serve``
  and by the import check of ``helix deploy``. It is not part of the deployed bundle.

Import :mod:`.entry` only after :func:`.standin.install` on CPython; inside a Worker the
real ``workers`` SDK is used.
"""
