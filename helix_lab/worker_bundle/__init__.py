"""The Cloudflare Python Worker that serves helix_lab agents, and its local stand-in.

- :mod:`.entry`: ``Default`` (the Worker's front door, :mod:`.front_door`: bearer auth and
  routing through :func:`helix_lab.runtime.gateway.route`) and ``HelixAgentServer`` (the
  Durable Object, :mod:`.durable_object`, running the same ``AgentServer`` as the kernel
  over ``ctx.storage.sql``), with the modules they are made of: :mod:`.agents`,
  :mod:`.env` (the public ``EnvView``), :mod:`.stubs`, :mod:`.convert`, :mod:`.do_sql`
  and :mod:`.sockets`;
- :mod:`.fetch_llm`: Claude over the Messages API through the Worker's ``fetch``;
- :mod:`.standin`: a CPython stand-in for the ``workers`` runtime, used by ``helix serve``
  and by the import check of ``helix deploy``. It is not part of the deployed bundle.

Import :mod:`.entry` only after :func:`.standin.install` on CPython; inside a Worker the
real ``workers`` SDK is used.
"""
