"""The ``helix`` command: serve the Worker bundle locally, or deploy it to Cloudflare.

::

    $ HELIX_TOKEN=... helix serve [--host 127.0.0.1] [--port 8787] [--storage DIR] [--agents MODULE]
    helix serve listening on http://127.0.0.1:8787

    $ HELIX_TOKEN=... helix serve --engine pyodide     # the bundle under real Pyodide (Node)

    $ helix deploy --dry-run [--name N] [--agents MODULE] [--dir OUT]

Problems are reported as one line, ``helix: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import UserError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .deploy import DEFAULT_DIR, DEFAULT_NAME
    from .serve import (
        APPROACHES,
        DEFAULT_HOST,
        DEFAULT_PORT,
        DEFAULT_STORAGE,
        ENGINES,
        PYODIDE_STORAGE,
    )

    parser = argparse.ArgumentParser(prog="helix", description="Serve or deploy helix_lab "
                                     "agents as a (local or Cloudflare) Worker.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the Worker bundle on this machine",
        description="Run the Worker bundle under uvicorn with a CPython stand-in for the "
        "Workers runtime, or (--engine pyodide) as deployed, under real Pyodide in Node. "
        "Clients authenticate with the bearer token in $HELIX_TOKEN.")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"interface to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--storage", default=DEFAULT_STORAGE,
                       help=f"directory for the objects' sqlite files (default {DEFAULT_STORAGE}; "
                       f"{PYODIDE_STORAGE} with --engine pyodide)")
    serve.add_argument("--agents", default=None, metavar="MODULE",
                       help="module defining the agents (default helix_lab.examples)")
    serve.add_argument("--engine", choices=ENGINES, default="cpython",
                       help="cpython: the bundle on this interpreter with a stand-in runtime "
                       "(default); pyodide: the bundle as deployed, under real Pyodide in "
                       "Node (install it with: python -m helix_lab.pyodide_host install)")
    serve.add_argument("--approach", choices=APPROACHES, default="durable-objects",
                       help="durable-objects: one Durable Object per session (default); "
                       "workflows: each run a Workflow instance of memoized steps, with D1 "
                       "and stream objects")

    deploy = commands.add_parser(
        "deploy", help="write a Cloudflare Worker project and deploy it",
        description="Write a Worker project for your agents and run the Cloudflare "
        "toolchain. --dry-run builds and validates without uploading.")
    deploy.add_argument("--dry-run", action="store_true",
                        help="build and validate (wrangler deploy --dry-run) without uploading")
    deploy.add_argument("--name", default=DEFAULT_NAME,
                        help=f"Worker name (default {DEFAULT_NAME})")
    deploy.add_argument("--agents", default=None, metavar="MODULE",
                        help="module defining the agents (default helix_lab.examples)")
    deploy.add_argument("--approach", choices=APPROACHES, default="durable-objects",
                        help="durable-objects (default), or workflows: [[workflows]], "
                        "[[d1_databases]] with its schema migration, and the STREAMS objects")
    deploy.add_argument("--dir", default=DEFAULT_DIR, metavar="OUT",
                        help=f"project directory to write (default ./{DEFAULT_DIR})")
    return parser


def _say(message: str) -> None:
    print(message, flush=True)


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}.")
    try:
        serve(host=args.host, port=args.port, storage=args.storage, agents=args.agents,
              engine=args.engine, approach=args.approach, announce=_say)
    except KeyboardInterrupt:
        pass
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from .deploy import deploy

    result = deploy(dry_run=args.dry_run, name=args.name, agents=args.agents, out_dir=args.dir,
                    log=_say, approach=args.approach)
    for warning in result.warnings:
        _say(f"warning: {warning}")
    _say("next: set the secrets (never put them in wrangler.toml):")
    for step in result.next_steps:
        _say(f"  {step}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``helix`` console script."""
    args = build_parser().parse_args(argv)
    cwd = os.getcwd()
    if cwd not in sys.path:  # `--agents my_agents` means the module here
        sys.path.insert(0, cwd)
    try:
        if args.command == "serve":
            return _serve(args)
        return _deploy(args)
    except UserError as exc:
        print(f"helix: error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
