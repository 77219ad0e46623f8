"""``.helix`` files: one session, its storage and a manifest, to send to someone else.

A ``.helix`` file is a zip archive::

    manifest.json             format, helix_lab version, session id, agent type, status,
                              the agent's system prompt, model and tool specs, and for
                              each table its row count and the SHA-256 of its entry
    tables/helix_chunks.jsonl one JSON object per row, in rowid order
    tables/helix_messages.jsonl ...

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


class SessionFileError(UserError):
    """A file is not a ``.helix`` session file, or it is damaged; the message says which."""


def _table_entry(table: str) -> str:
    return f"tables/{table}.jsonl"


# -- export -------------------------------------------------------------------------------


async def export_session(handle: AgentHandle, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``handle``'s session to the ``.helix`` file ``path``; returns its manifest.

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
    manifest: dict[str, Any] | None = None
    tables: dict[str, dict[str, Any]] = {}
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
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
                    current = (table, archive.open(_table_entry(table), "w"),
                               hashlib.sha256())
                    tables[table] = {"rows": 0}
                data = (json.dumps(row, ensure_ascii=False) + "\n").encode()
                current[1].write(data)
                current[2].update(data)
                tables[table]["rows"] += 1
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
                    archive.writestr(_table_entry(table), b"")
                    tables[table] = {"rows": 0, "sha256": hashlib.sha256(b"").hexdigest()}
            manifest.update(helixLab=__version__, exportedAt=int(time.time() * 1000),
                            tables=tables)
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
    return manifest


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
                for table, info in manifest["tables"].items():
                    self._check_table(archive, table, info)
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
        for key in ("sessionId", "agentType", "tables"):
            if key not in manifest:
                raise self._fail(f"its manifest has no {key!r}.")
        tables = manifest["tables"]
        if not isinstance(tables, dict) or "helix_session" not in tables:
            raise self._fail("its manifest lists no helix_session table.")
        for table in tables:
            if not _TABLE.match(str(table)):
                raise self._fail(f"its manifest names a table {str(table)[:80]!r}, which is "
                                 "not one of helix_lab's.")
        return manifest

    def _check_table(self, archive: zipfile.ZipFile, table: str, info: Any) -> None:
        if not isinstance(info, dict) or not isinstance(info.get("rows"), int):
            raise self._fail(f"the manifest entry of {table} has no row count.")
        digest = hashlib.sha256()
        count = 0
        try:
            with archive.open(_table_entry(table)) as entry:
                for number, line in enumerate(entry, start=1):
                    digest.update(line)
                    try:
                        row = json.loads(line)
                    except ValueError:
                        raise self._fail(f"{_table_entry(table)} line {number} is not "
                                         "JSON.") from None
                    if not isinstance(row, dict) or not all(
                            isinstance(k, str) and _COLUMN.match(k) for k in row):
                        raise self._fail(f"{_table_entry(table)} line {number} is not a row.")
                    count += 1
        except KeyError:
            raise self._fail(f"{_table_entry(table)} is missing.") from None
        if digest.hexdigest() != info.get("sha256"):
            raise self._fail(f"{_table_entry(table)} does not match its checksum; the file "
                             "was changed or damaged after it was exported.")
        if count != info["rows"]:
            raise self._fail(f"{_table_entry(table)} has {count} rows; the manifest says "
                             f"{info['rows']}.")

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        """The rows of ``table``, in the order they were stored."""
        if table not in self.manifest["tables"]:
            return
        with zipfile.ZipFile(self.path) as archive, archive.open(_table_entry(table)) as entry:
            for line in entry:
                yield json.loads(line)


# -- import -------------------------------------------------------------------------------


async def import_session(path: str | os.PathLike[str],
                         namespace: LocalNamespace) -> SessionFile:
    """Store the session of a ``.helix`` file in ``namespace``; returns the file read.

    The whole file is checked first. The session is then written into a new database
    beside the namespace's, with the namespace's own schema, and renamed into place: a
    session already stored under that id, a damaged file or a failed write leave the
    namespace exactly as it was.
    """
    from .runtime.namespace import LocalNamespace

    file = await asyncio.to_thread(SessionFile, path)  # reads and hashes every entry
    if namespace.in_memory:
        raise UserError("Importing needs a namespace on disk, not storage=':memory:'.")
    object_id = namespace.id_from_name("session:" + file.session_id)
    if namespace.exists(object_id):
        raise UserError(f"Session {file.session_id!r} is already stored here "
                        f"({namespace.storage}); nothing was changed. Import it into other "
                        "storage (HELIX_STORAGE), or remove that session first.")
    staging = await asyncio.to_thread(_staging_dir, namespace.storage)
    try:
        # The namespace's own server class writes the schema, whatever its version.
        fresh = LocalNamespace(namespace.server_class, env=namespace.env, storage=staging)
        fresh.instance(object_id)
        staged = fresh.storage_path(object_id)
        await fresh.aclose()
        await asyncio.to_thread(_write, file, staged)
        if namespace.exists(object_id):  # stored meanwhile: keep that one
            raise UserError(f"Session {file.session_id!r} was stored here while importing; "
                            "nothing was changed.")
        os.replace(staged, namespace.storage_path(object_id))
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    return file


def _staging_dir(storage: str) -> str:
    """A private directory inside the storage, so the final rename stays on one disk."""
    Path(storage).mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=".import-", dir=storage)


def _write(file: SessionFile, path: str) -> None:
    from .runtime.sql import SqliteStorage

    sql = SqliteStorage(path)
    try:
        sql.transaction(lambda: _insert(file, sql))
    finally:
        sql.close()


def _insert(file: SessionFile, sql: Any) -> None:
    existing = {r["name"] for r in sql.exec(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in file.tables:
        if table not in existing:
            raise file._fail(f"it holds a table {table} that this helix_lab does not know; "
                             "it was exported by another version.")
        columns = {r["name"] for r in sql.exec(f"PRAGMA table_info({table})")}
        replace = "OR REPLACE " if table == "helix_meta" else ""
        for row in file.rows(table):
            unknown = sorted(set(row) - columns)
            if unknown:
                raise file._fail(f"{table} has columns {unknown} that this helix_lab does not "
                                 "know; it was exported by another version.")
            names = ", ".join(row)
            sql.exec(f"INSERT {replace}INTO {table} ({names}) VALUES "
                     f"({', '.join('?' for _ in row)})", *row.values())
    sessions = sql.exec("SELECT session_id FROM helix_session")
    if [r["session_id"] for r in sessions] != [file.session_id]:
        raise file._fail("its helix_session table does not hold the session its manifest "
                         "names.")
