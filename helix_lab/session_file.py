"""``.helix`` files: one session, its storage and a manifest, to send to someone else.

A ``.helix`` file is a zip archive::

    manifest.json             format, helix_lab version, session id, agent type, status,
                              the agent's system prompt, model and tool specs, and for
                              each table its row count and the SHA-256 of its entry;
                              ``children``: the same for each sub-agent session
    tables/helix_chunks.jsonl one JSON object per row, in rowid order
    tables/helix_messages.jsonl ...
    children/{sessionId}/tables/...   the sub-agents' sessions, found through the
                              ``subagent_start`` chunks (recursively)

``export_session`` writes one from any backend (it reads ``GET /export``, streamed, so a
long session is written in bounded memory). ``import_session`` checks the whole file before
it touches anything, then writes the session into a local namespace in one step, so a
corrupt or foreign file leaves the storage exactly as it was. ``SessionFile`` reads one,
for :meth:`~helix_lab.llm.cassette.ReplayLLM.from_session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .runtime.export import FORMAT, FORMAT_VERSION

if TYPE_CHECKING:
    from .client.handle import AgentHandle
    from .runtime.namespace import LocalNamespace

__all__ = ["SessionFile", "SessionFileError", "export_session", "import_session"]

MANIFEST = "manifest.json"
_TABLE = re.compile(r"^helix_[a-z0-9_]{1,60}$")
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]{0,60}$")
_SESSION = re.compile(r"^[A-Za-z0-9._:~-]{1,200}$")


class SessionFileError(UserError):
    """A file is not a ``.helix`` session file, or it is damaged; the message says which."""


def _table_entry(table: str, prefix: str = "") -> str:
    return f"{prefix}tables/{table}.jsonl"


# -- export -------------------------------------------------------------------------------


async def export_session(handle: AgentHandle, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``handle``'s session, and the sessions of its sub-agents, to the ``.helix``
    file ``path``; returns its manifest.

    The file is written next to ``path`` and renamed into place at the end, so an export
    that fails midway leaves no half-written file behind.
    """
    from . import __version__

    target = Path(path)
    if target.suffix != ".helix":
        raise UserError(f"Name the export file *.helix, got {str(target)!r}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".export-", suffix=".helix", dir=target.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            manifest, pending = await _write_session(archive, handle, "")
            children: list[dict[str, Any]] = []
            seen = {manifest["sessionId"]}
            while pending:
                session_id, agent_type = pending.pop(0)
                if session_id in seen or not _SESSION.match(session_id):
                    continue
                seen.add(session_id)
                child = type(handle)(handle.backend, session_id, None, agent_type)
                child_manifest, more = await _write_session(archive, child,
                                                            _children_prefix(session_id))
                children.append(child_manifest)
                pending += more
            manifest.update(helixLab=__version__, exportedAt=int(time.time() * 1000),
                            children=children)
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
    return manifest


def _children_prefix(session_id: str) -> str:
    return f"children/{session_id}/"


def _sessions(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(prefix, manifest)`` of the session a manifest describes, then of its children."""
    return [("", manifest), *((_children_prefix(c["sessionId"]), c)
                              for c in manifest.get("children") or [])]


async def _write_session(archive: zipfile.ZipFile, handle: AgentHandle,
                         prefix: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """One session's rows as entries under ``prefix``; its manifest, and the sub-agent
    sessions its chunks name."""
    manifest: dict[str, Any] | None = None
    tables: dict[str, dict[str, Any]] = {}
    children: list[tuple[str, str]] = []
    current: tuple[str, Any, Any] | None = None  # table, entry writer, sha256
    end: dict[str, Any] | None = None
    async for line in handle.export_lines():
        if "manifest" in line:
            manifest = dict(line["manifest"])
            continue
        if "end" in line:
            end = line["end"]
            continue
        table, row = line["table"], line["row"]
        if current is None or current[0] != table:
            if current is not None:
                current[1].close()
                tables[current[0]]["sha256"] = current[2].hexdigest()
            current = (table, archive.open(_table_entry(table, prefix), "w"), hashlib.sha256())
            tables[table] = {"rows": 0}
        data = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        current[1].write(data)
        current[2].update(data)
        tables[table]["rows"] += 1
        if table == "helix_chunks" and row.get("type") == "subagent_start":
            body = json.loads(row["body"])
            children.append((str(body.get("childSessionId")), str(body.get("childAgentType"))))
    if current is not None:
        current[1].close()
        tables[current[0]]["sha256"] = current[2].hexdigest()
    if manifest is None or end is None:
        raise UserError("The export stream ended early; try the export again.")
    if {t: v["rows"] for t, v in tables.items() if v["rows"]} != {
            t: n for t, n in end["tables"].items() if n}:
        raise UserError("The export stream lost rows on the way; try it again.")
    for table, count in end["tables"].items():
        if not count:  # an empty table still gets its (empty) entry
            archive.writestr(_table_entry(table, prefix), b"")
            tables[table] = {"rows": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    manifest["tables"] = tables
    return manifest, children


# -- reading ------------------------------------------------------------------------------


class SessionFile:
    """A ``.helix`` file, checked entry by entry as it is opened.

    Opening reads every row once (to check the checksums and that each line is a JSON
    object); :meth:`rows` reads a table again when asked.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest = self._check()

    @property
    def session_id(self) -> str:
        return str(self.manifest["sessionId"])

    @property
    def agent_type(self) -> str:
        return str(self.manifest["agentType"])

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest["tables"])

    @property
    def sessions(self) -> list[tuple[str, dict[str, Any]]]:
        """``(prefix, manifest)`` of every session in the file: this one, then its
        sub-agents'. ``prefix`` goes to :meth:`rows`."""
        return _sessions(self.manifest)

    def _fail(self, problem: str) -> SessionFileError:
        return SessionFileError(f"{self.path} is not a usable .helix file: {problem}")

    def _check(self) -> dict[str, Any]:
        if not self.path.is_file():
            raise SessionFileError(f"No file at {self.path}; %helix export SESSION PATH "
                                   "writes one.")
        if not zipfile.is_zipfile(self.path):
            raise self._fail("it is not a zip archive (a .helix file is one). Was it cut "
                             "short, or is it some other kind of file?")
        try:
            with zipfile.ZipFile(self.path) as archive:
                manifest = self._manifest(archive)
                for prefix, part in _sessions(manifest):
                    for table, info in part["tables"].items():
                        self._check_table(archive, table, info, prefix)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise self._fail(f"the archive is damaged ({exc}).") from None
        return manifest

    def _manifest(self, archive: zipfile.ZipFile) -> dict[str, Any]:
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except KeyError:
            raise self._fail(f"it has no {MANIFEST}; it was not written by %helix "
                             "export.") from None
        except ValueError as exc:
            raise self._fail(f"its {MANIFEST} is not JSON ({exc}).") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise self._fail(f"its {MANIFEST} does not describe a helix session (format "
                             f"{manifest.get('format') if isinstance(manifest, dict) else None!r}"
                             f", expected {FORMAT!r}).")
        version = manifest.get("formatVersion")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise self._fail(f"it has format version {version!r}; this helix_lab reads "
                             f"version {FORMAT_VERSION}. Upgrade helix_lab to open it.")
        manifest.setdefault("children", [])
        if not isinstance(manifest["children"], list):
            raise self._fail("its manifest's children is not a list.")
        for part in [manifest, *manifest["children"]]:
            self._check_part(part)
        return manifest

    def _check_part(self, part: Any) -> None:
        """One session's entry of the manifest: its id, agent and tables."""
        if not isinstance(part, dict):
            raise self._fail("its manifest lists a session that is not an object.")
        for key in ("sessionId", "agentType", "tables"):
            if key not in part:
                raise self._fail(f"its manifest has no {key!r}.")
        if not _SESSION.match(str(part["sessionId"])):
            raise self._fail(f"its manifest names a session {str(part['sessionId'])[:80]!r}, "
                             "which is not a session id.")
        tables = part["tables"]
        if not isinstance(tables, dict) or "helix_session" not in tables:
            raise self._fail("its manifest lists no helix_session table.")
        for table in tables:
            if not _TABLE.match(str(table)):
                raise self._fail(f"its manifest names a table {str(table)[:80]!r}, which is "
                                 "not one of helix_lab's.")

    def _check_table(self, archive: zipfile.ZipFile, table: str, info: Any,
                     prefix: str) -> None:
        name = _table_entry(table, prefix)
        if not isinstance(info, dict) or not isinstance(info.get("rows"), int):
            raise self._fail(f"the manifest entry of {name} has no row count.")
        digest = hashlib.sha256()
        count = 0
        try:
            with archive.open(name) as entry:
                for number, line in enumerate(entry, start=1):
                    digest.update(line)
                    try:
                        row = json.loads(line)
                    except ValueError:
                        raise self._fail(f"{name} line {number} is not JSON.") from None
                    if not isinstance(row, dict) or not all(
                            isinstance(k, str) and _COLUMN.match(k) for k in row):
                        raise self._fail(f"{name} line {number} is not a row.")
                    count += 1
        except KeyError:
            raise self._fail(f"{name} is missing.") from None
        if digest.hexdigest() != info.get("sha256"):
            raise self._fail(f"{name} does not match its checksum; the file was changed or "
                             "damaged after it was exported.")
        if count != info["rows"]:
            raise self._fail(f"{name} has {count} rows; the manifest says {info['rows']}.")

    def rows(self, table: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        """The rows of ``table`` (of the session under ``prefix``), in stored order."""
        part = dict(self.sessions).get(prefix)
        if part is None or table not in part["tables"]:
            return
        with zipfile.ZipFile(self.path) as archive, \
                archive.open(_table_entry(table, prefix)) as entry:
            for line in entry:
                yield json.loads(line)


# -- import -------------------------------------------------------------------------------


async def import_session(path: str | os.PathLike[str],
                         namespace: LocalNamespace) -> SessionFile:
    """Store the sessions of a ``.helix`` file (the session and its sub-agents') in
    ``namespace``; returns the file read.

    The whole file is checked first. Each session is then written into a new database
    beside the namespace's, with the namespace's own schema, and they are renamed into
    place only once all are written: a session already stored under one of the ids, a
    damaged file or a failed write leave the namespace exactly as it was.
    """
    from .runtime.namespace import LocalNamespace

    file = await asyncio.to_thread(SessionFile, path)  # reads and hashes every entry
    if namespace.in_memory:
        raise UserError("Importing needs a namespace on disk, not storage=':memory:'.")
    sessions = [(prefix, str(part["sessionId"]),
                 namespace.id_from_name("session:" + str(part["sessionId"])))
                for prefix, part in file.sessions]
    for _, session_id, object_id in sessions:
        if namespace.exists(object_id):
            raise UserError(f"Session {session_id!r} is already stored here "
                            f"({namespace.storage}); nothing was changed. Import it into "
                            "other storage (HELIX_STORAGE), or remove that session first.")
    staging = await asyncio.to_thread(_staging_dir, namespace.storage)
    try:
        # The namespace's own server class writes the schema, whatever its version.
        fresh = LocalNamespace(namespace.server_class, env=namespace.env, storage=staging)
        for _, _, object_id in sessions:
            fresh.instance(object_id)
        await fresh.aclose()
        for prefix, session_id, object_id in sessions:
            await asyncio.to_thread(_write, file, fresh.storage_path(object_id), prefix,
                                    session_id)
        if any(namespace.exists(object_id) for _, _, object_id in sessions):
            raise UserError(f"Session {file.session_id!r} was stored here while importing; "
                            "nothing was changed.")
        for _, _, object_id in sessions:
            os.replace(fresh.storage_path(object_id), namespace.storage_path(object_id))
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    return file


def _staging_dir(storage: str) -> str:
    """A private directory inside the storage, so the final rename stays on one disk."""
    Path(storage).mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=".import-", dir=storage)


def _write(file: SessionFile, path: str, prefix: str, session_id: str) -> None:
    from .runtime.sql import SqliteStorage

    sql = SqliteStorage(path)
    try:
        sql.transaction(lambda: _insert(file, sql, prefix, session_id))
    finally:
        sql.close()


def _insert(file: SessionFile, sql: Any, prefix: str, session_id: str) -> None:
    existing = {r["name"] for r in sql.exec(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in dict(file.sessions)[prefix]["tables"]:
        if table not in existing:
            raise file._fail(f"it holds a table {table} that this helix_lab does not know; "
                             "it was exported by another version.")
        columns = {r["name"] for r in sql.exec(f"PRAGMA table_info({table})")}
        replace = "OR REPLACE " if table == "helix_meta" else ""
        for row in file.rows(table, prefix):
            unknown = sorted(set(row) - columns)
            if unknown:
                raise file._fail(f"{table} has columns {unknown} that this helix_lab does not "
                                 "know; it was exported by another version.")
            names = ", ".join(row)
            sql.exec(f"INSERT {replace}INTO {table} ({names}) VALUES "
                     f"({', '.join('?' for _ in row)})", *row.values())
    stored = sql.exec("SELECT session_id FROM helix_session")
    if [r["session_id"] for r in stored] != [session_id]:
        raise file._fail(f"the helix_session table of {session_id} does not hold the session "
                         "its manifest names.")
