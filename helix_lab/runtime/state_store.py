"""``DOStateStore``: the session, its messages and its checkpoints, on ``SqlStorage``.

Layout, chosen so that a step costs the same whatever the history's length:

- Messages are append-only rows with a ``parent_id``. A checkpoint names the last
  message of its prefix (``message_head``), so forking never copies or rewrites history:
  a branch just appends rows whose parent is the fork point. The messages form a tree.
- A checkpoint stores the state as a JSON patch against its parent checkpoint, with a
  full copy every :data:`SNAPSHOT_EVERY` links, so loading any checkpoint reads a bounded
  number of rows and storage grows with what changed.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .jsonpatch import apply_patch, make_patch
from .sql import SqlStorage, SqlTables

__all__ = ["SNAPSHOT_EVERY", "Checkpoint", "DOStateStore", "checkpoint_id", "message_prefix"]

SNAPSHOT_EVERY = 32
SCHEMA_VERSION = "1"

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS helix_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS helix_session (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        session_id TEXT NOT NULL, agent_type TEXT NOT NULL, user_id TEXT,
        tags TEXT NOT NULL DEFAULT '[]', metadata TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL, run_id TEXT, head_checkpoint TEXT,
        output TEXT, error TEXT, branches INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS helix_messages (
        id INTEGER PRIMARY KEY, parent_id INTEGER, message TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS helix_checkpoints (
        n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, parent_id TEXT, run_id TEXT NOT NULL,
        step INTEGER NOT NULL, branch INTEGER NOT NULL, message_head INTEGER,
        message_count INTEGER NOT NULL, state_full TEXT, state_patch TEXT,
        depth INTEGER NOT NULL, status TEXT NOT NULL, sequence INTEGER NOT NULL,
        output TEXT, created_at INTEGER NOT NULL)""",
    # Pages of one branch, and each branch's first and last checkpoint, without a scan.
    """CREATE INDEX IF NOT EXISTS helix_checkpoints_branch
        ON helix_checkpoints (branch, sequence)""",
]


def now_ms() -> int:
    return int(time.time() * 1000)


def checkpoint_id(session_id: str, step: int, ms: int | None = None) -> str:
    """``cpv1-{sessionId}-s{step}-t{ms}-{6hex}``."""
    return f"cpv1-{session_id}-s{step}-t{ms if ms is not None else now_ms()}-{secrets.token_hex(3)}"


@dataclass
class Checkpoint:
    """A checkpoint's metadata. Its state is loaded separately (:meth:`DOStateStore.state_at`)."""

    id: str
    parent_id: str | None
    run_id: str
    step: int
    branch: int
    message_head: int | None
    message_count: int
    status: str
    sequence: int
    created_at: int
    output: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpointId": self.id,
            "parentId": self.parent_id,
            "runId": self.run_id,
            "step": self.step,
            "branch": self.branch,
            "messageCount": self.message_count,
            "status": self.status,
            "sequence": self.sequence,
            "timestamp": self.created_at,
        }


def _checkpoint(row: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        id=row["id"], parent_id=row["parent_id"], run_id=row["run_id"], step=row["step"],
        branch=row["branch"], message_head=row["message_head"],
        message_count=row["message_count"], status=row["status"], sequence=row["sequence"],
        created_at=row["created_at"],
        output=json.loads(row["output"]) if row["output"] is not None else None,
    )


_CP_COLUMNS = ("id, parent_id, run_id, step, branch, message_head, message_count, status, "
               "sequence, created_at, output")


_CHAIN = """WITH RECURSIVE chain(id, parent_id, message, depth) AS (
                SELECT id, parent_id, message, 0 FROM helix_messages WHERE id = ?
                UNION ALL
                SELECT m.id, m.parent_id, m.message, chain.depth + 1
                FROM helix_messages m JOIN chain ON m.id = chain.parent_id{bound})
            SELECT message FROM chain ORDER BY depth DESC"""
_PREFIX = _CHAIN.format(bound="")
_TAIL = _CHAIN.format(bound=" WHERE chain.depth + 1 < ?")


def message_prefix(sql: SqlStorage, head: int | None,
                   limit: int | None = None) -> list[dict[str, Any]]:
    """The message prefix that ends at ``head``, oldest first: only its last ``limit``
    messages when ``limit`` is given (the walk up the tree stops there)."""
    if head is None or (limit is not None and limit <= 0):
        return []
    rows = sql.exec(_PREFIX, head) if limit is None else sql.exec(_TAIL, head, limit)
    return [json.loads(r["message"]) for r in rows]


class DOStateStore(SqlTables):
    """Session row, message tree and checkpoints of one Durable Object."""

    SCHEMA = _SCHEMA

    def __init__(self, sql: SqlStorage) -> None:
        super().__init__(sql)
        sql.exec("INSERT OR IGNORE INTO helix_meta (key, value) VALUES ('schema', ?)",
                 SCHEMA_VERSION)

    # -- the session row ------------------------------------------------------------------

    @staticmethod
    def peek_session(sql: SqlStorage) -> dict[str, Any] | None:
        """The raw session row of a store, read without creating any table."""
        if not sql.exec("SELECT name FROM sqlite_master WHERE name = 'helix_session'"):
            return None
        rows = sql.exec("SELECT * FROM helix_session WHERE id = 1")
        return rows[0] if rows else None

    def get_session(self) -> dict[str, Any] | None:
        rows = self.sql.exec("SELECT * FROM helix_session WHERE id = 1")
        if not rows:
            return None
        row = rows[0]
        row["tags"] = json.loads(row["tags"])
        row["metadata"] = json.loads(row["metadata"])
        row["output"] = json.loads(row["output"]) if row["output"] is not None else None
        return row

    def create_session(self, session_id: str, agent_type: str, *, user_id: str | None = None,
                       tags: list[str] | None = None,
                       metadata: dict[str, str] | None = None) -> None:
        ms = now_ms()
        self.sql.exec(
            "INSERT INTO helix_session (id, session_id, agent_type, user_id, tags, metadata, "
            "status, created_at, updated_at) VALUES (1, ?, ?, ?, ?, ?, 'idle', ?, ?)",
            session_id, agent_type, user_id, json.dumps(tags or []),
            json.dumps(metadata or {}), ms, ms,
        )

    def update_session(self, **fields: Any) -> None:
        if "output" in fields:
            fields["output"] = json.dumps(fields["output"]) if fields["output"] is not None else None
        fields["updated_at"] = now_ms()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.sql.exec(f"UPDATE helix_session SET {assignments} WHERE id = 1", *fields.values())

    def new_branch(self) -> int:
        self.sql.exec("UPDATE helix_session SET branches = branches + 1 WHERE id = 1")
        return int(self.sql.exec("SELECT branches FROM helix_session WHERE id = 1")[0]["branches"])

    # -- messages -------------------------------------------------------------------------

    def append_messages(self, head: int | None, messages: list[dict[str, Any]]) -> int | None:
        """Append ``messages`` after ``head``; returns the new head."""
        for message in messages:
            head = int(self.sql.exec(
                "INSERT INTO helix_messages (parent_id, message) VALUES (?, ?) RETURNING id",
                head, json.dumps(message))[0]["id"])
        return head

    def load_messages(self, head: int | None) -> list[dict[str, Any]]:
        """The message prefix that ends at ``head``, oldest first."""
        return message_prefix(self.sql, head)

    # -- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(
        self,
        *,
        session_id: str,
        parent: Checkpoint | None,
        parent_state: dict[str, Any] | None,
        state: dict[str, Any],
        run_id: str,
        step: int,
        branch: int,
        message_head: int | None,
        message_count: int,
        status: str,
        sequence: int,
        output: Any = None,
        cp_id: str | None = None,
    ) -> Checkpoint:
        """Write a checkpoint whose state is a patch against ``parent`` (when it has one)."""
        ms = now_ms()
        cp_id = cp_id or checkpoint_id(session_id, step, ms)
        depth = 0
        full: str | None = json.dumps(state)
        patch: str | None = None
        if parent is not None and parent_state is not None:
            parent_depth = int(self.sql.exec(
                "SELECT depth FROM helix_checkpoints WHERE id = ?", parent.id)[0]["depth"])
            if parent_depth + 1 < SNAPSHOT_EVERY:
                depth = parent_depth + 1
                full, patch = None, json.dumps(make_patch(parent_state, state))
        self.sql.exec(
            "INSERT INTO helix_checkpoints (id, parent_id, run_id, step, branch, message_head, "
            "message_count, state_full, state_patch, depth, status, sequence, output, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            cp_id, parent.id if parent else None, run_id, step, branch, message_head,
            message_count, full, patch, depth, status, sequence,
            json.dumps(output) if output is not None else None, ms,
        )
        return Checkpoint(id=cp_id, parent_id=parent.id if parent else None, run_id=run_id,
                          step=step, branch=branch, message_head=message_head,
                          message_count=message_count, status=status, sequence=sequence,
                          created_at=ms, output=output)

    def get_checkpoint(self, cp_id: str) -> Checkpoint | None:
        rows = self.sql.exec(f"SELECT {_CP_COLUMNS} FROM helix_checkpoints WHERE id = ?", cp_id)
        return _checkpoint(rows[0]) if rows else None

    def list_checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint of every branch, oldest first."""
        rows = self.sql.exec(f"SELECT {_CP_COLUMNS} FROM helix_checkpoints ORDER BY n")
        return [_checkpoint(r) for r in rows]

    def checkpoint_count(self) -> int:
        return int(self.sql.exec("SELECT COUNT(*) AS n FROM helix_checkpoints")[0]["n"])

    def page_checkpoints(self, *, branch: int | None = None, after: int | None = None,
                         before: int | None = None, limit: int) -> tuple[list[Checkpoint], bool]:
        """Up to ``limit`` checkpoints, oldest first, and whether more lie beyond the page.

        ``after`` and ``before`` are checkpoint sequences (exclusive). With ``before`` the
        page is the ``limit`` checkpoints just before it (paging back from a branch's
        head); otherwise the ones just after ``after``. ``branch`` keeps one branch.
        """
        where, params = [], []
        if branch is not None:
            where.append("branch = ?")
            params.append(branch)
        if after is not None:
            where.append("sequence > ?")
            params.append(after)
        if before is not None:
            where.append("sequence < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "DESC" if before is not None else "ASC"
        rows = self.sql.exec(f"SELECT {_CP_COLUMNS} FROM helix_checkpoints {clause} "
                             f"ORDER BY sequence {order} LIMIT ?", *params, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        if before is not None:
            rows.reverse()
        return [_checkpoint(r) for r in rows], more

    def branches(self) -> list[dict[str, Any]]:
        """Every branch with where it forked from and its head, in branch order.

        A branch's first checkpoint names its parent: the fork point, on another branch
        (``None`` for branch 0). ``status`` is the head checkpoint's; the server puts the
        session's own status on the branch the session is on.
        """
        rows = self.sql.exec(
            """SELECT b.branch, b.n_checkpoints, first.parent_id AS fork_id,
                      fork.branch AS parent_branch, fork.step AS fork_step,
                      head.id AS head_id, head.step AS head_step, head.status AS status,
                      head.sequence AS head_sequence
               FROM (SELECT branch, MIN(sequence) AS first_seq, MAX(sequence) AS last_seq,
                            COUNT(*) AS n_checkpoints
                     FROM helix_checkpoints GROUP BY branch) b
               JOIN helix_checkpoints first
                 ON first.branch = b.branch AND first.sequence = b.first_seq
               JOIN helix_checkpoints head
                 ON head.branch = b.branch AND head.sequence = b.last_seq
               LEFT JOIN helix_checkpoints fork ON fork.id = first.parent_id
               ORDER BY b.branch""")
        return [{"branch": r["branch"], "parentBranch": r["parent_branch"],
                 "forkCheckpointId": r["fork_id"], "forkStep": r["fork_step"],
                 "headCheckpointId": r["head_id"], "headStep": r["head_step"],
                 "headSequence": r["head_sequence"], "checkpointCount": r["n_checkpoints"],
                 "status": r["status"]} for r in rows]

    def first_checkpoint(self, branch_of: Checkpoint) -> Checkpoint:
        """The step-0 checkpoint that ``branch_of`` descends from."""
        rows = self.sql.exec(
            f"""WITH RECURSIVE chain(id, parent_id) AS (
                   SELECT id, parent_id FROM helix_checkpoints WHERE id = ?
                   UNION ALL
                   SELECT c.id, c.parent_id FROM helix_checkpoints c
                   JOIN chain ON c.id = chain.parent_id)
               SELECT {_CP_COLUMNS} FROM helix_checkpoints
               WHERE id IN (SELECT id FROM chain) AND parent_id IS NULL""",
            branch_of.id,
        )
        return _checkpoint(rows[0]) if rows else branch_of

    def state_at(self, cp_id: str) -> dict[str, Any]:
        """The full state of a checkpoint: its nearest snapshot plus the patches since."""
        rows = self.sql.exec(
            """WITH RECURSIVE chain(id, parent_id, state_full, state_patch, depth) AS (
                   SELECT id, parent_id, state_full, state_patch, 0
                   FROM helix_checkpoints WHERE id = ?
                   UNION ALL
                   SELECT c.id, c.parent_id, c.state_full, c.state_patch, chain.depth + 1
                   FROM helix_checkpoints c JOIN chain ON c.id = chain.parent_id
                   WHERE chain.state_full IS NULL)
               SELECT state_full, state_patch FROM chain ORDER BY depth DESC""",
            cp_id,
        )
        if not rows or rows[0]["state_full"] is None:
            raise KeyError(cp_id)
        state = json.loads(rows[0]["state_full"])
        for row in rows[1:]:
            state = apply_patch(state, json.loads(row["state_patch"]))
        return state
