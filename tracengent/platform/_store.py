"""The local platform's persistent state, in one SQLite database.

One connection per `Store`, guarded by a lock: the ASGI server, an in-process transport and CLI
threads share it, and a SQLite connection must not run two statements at once. Files run in WAL
mode with a busy timeout, so a CLI process can read (and write) the same file while the server
runs. Every write is one `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so the
read-modify-write steps (ids, approvals, settings, tokens) stay atomic across processes too.

The store is deliberately dumb: it keeps what the engine decided and answers queries; policy,
token reconciliation and signing live in the engine. Two rules keep agents that share a platform
out of each other's data: an event id is unique per agent (another agent sending the same id
first must not make this agent's event a "duplicate"), and only the agent that owns a trace may
close it (`trace_owner`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ._store_records import (
    Approval,
    DecisionRecord,
    Grant,
    NotTraceOwner,
    TimelineEntry,
    TraceSummary,
    decode,
    dump_json,
    insert,
    parse_time,
)
from ._store_schema import migrate
from ._wire import EVENT_ID, OCCURRED_AT, ROOT_REQUEST, TRACE_ID

# The store's face: the records it takes and answers with are defined in `_store_records`.
__all__ = [
    "DB_NAME",
    "Approval",
    "DecisionRecord",
    "Grant",
    "NotTraceOwner",
    "Store",
    "TimelineEntry",
    "TraceSummary",
    "parse_time",
]

DB_NAME = "platform.sqlite3"

# Who owns a trace: the agent of the first event or decision the platform received for it
# (receipt order, never the client's occurredAt, which any client can backdate).
_OWNER_SQL = """
SELECT agent_id FROM (
    SELECT agent_id, received_at AS t, 0 AS k, seq AS s FROM events WHERE trace_id = ?1
    UNION ALL
    SELECT agent_id, created_at, 1, seq FROM decisions WHERE trace_id = ?1)
ORDER BY t, k, s LIMIT 1
"""


_EVENT_KEYS = (EVENT_ID, TRACE_ID, "type", "name", OCCURRED_AT, ROOT_REQUEST)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class Store:
    """Events, trace closes, decisions, approvals, grants, the token budget and settings."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        target = ":memory:" if path is None else os.fspath(path)
        # isolation_level=None: transactions are explicit, so none stays open between calls.
        self._conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        try:
            self._setup(file=path is not None)
        except BaseException:
            self._conn.close()
            raise

    def _setup(self, *, file: bool) -> None:
        # The server and a CLI may share the file: wait for the other's write lock, do not fail.
        self._conn.execute("PRAGMA busy_timeout = 10000")
        if file:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._write() as db:
            migrate(db)

    @classmethod
    def in_data_dir(
        cls, data_dir: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> Store:
        return cls(Path(data_dir) / DB_NAME, clock=clock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # never leave a half-done write holding the lock
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: answers built from several queries come from one snapshot."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def new_id(self, prefix: str) -> str:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (prefix,))
            db.execute("UPDATE counters SET value = value + 1 WHERE prefix = ?", (prefix,))
            value = db.execute("SELECT value FROM counters WHERE prefix = ?", (prefix,)).fetchone()
        return f"{prefix}_{value[0]}"

    # -- telemetry -------------------------------------------------------------------------------

    def add_events(
        self, agent_id: str, events: Sequence[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """Stores a batch under the authenticated `agent_id`; returns the events that were new.

        An eventId this agent sent before is a duplicate and is not stored again, so the caller
        acts on new events only (a retried batch must not, say, reconcile a token reservation
        twice). Ids are per agent: the same id from another agent is another event.
        """
        fresh: list[Mapping[str, Any]] = []
        now = self._clock()
        with self._write() as db:
            for event in events:
                eid, trace, kind, name, occurred, root = (_str(event.get(k)) for k in _EVENT_KEYS)
                at = parse_time(occurred)
                row = (eid or f"anon_{uuid.uuid4().hex}", trace, kind, name, occurred, root)
                inserted = db.execute(
                    "INSERT OR IGNORE INTO events (event_id, trace_id, type, name, occurred_at,"
                    " root_request, agent_id, at, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?)",
                    (*row, agent_id, now if at is None else at, now, dump_json(event)),
                ).rowcount
                if inserted:
                    fresh.append(event)
        return fresh

    def events(
        self, trace_id: str | None = None, agent_id: str | None = None
    ) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT body FROM events WHERE (?1 IS NULL OR trace_id = ?1)"
            " AND (?2 IS NULL OR agent_id = ?2) ORDER BY seq",
            trace_id,
            agent_id,
        )
        return [json.loads(row[0]) for row in rows]

    def event_count(self) -> int:
        return int(self._all("SELECT COUNT(*) FROM events")[0][0])

    def trace_owner(self, trace_id: str) -> str | None:
        """The agent that owns a trace: the one whose event or decision the platform received
        first for it, else the one that closed it; None for a trace nothing names yet.

        First come, first owner: an agent that learns a trace id before its owner ever uses it
        could claim it. Trace ids are random (`trc_` and 128 bits), so that takes the owner
        handing its id out before using it.
        """
        with self._read() as db:
            return self._owner(db, trace_id)

    @staticmethod
    def _owner(db: sqlite3.Connection, trace_id: str) -> str | None:
        row = db.execute(_OWNER_SQL, (trace_id,)).fetchone()
        if row is None:
            row = db.execute(
                "SELECT agent_id FROM trace_closes WHERE trace_id = ?", (trace_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def add_trace_close(self, agent_id: str, close: Mapping[str, Any]) -> bool:
        """Keeps the owner's first close of a trace; a repeated (retried) close changes nothing.

        Raises NotTraceOwner when another agent owns the trace. A close stored by a non-owner
        (a database from before ownership was checked) gives way to the owner's.
        """
        trace_id = _str(close.get(TRACE_ID))
        if trace_id is None:
            return False
        now = self._clock()
        at = parse_time(close.get(OCCURRED_AT))
        row = (trace_id, agent_id, _str(close.get("status")), _str(close.get(ROOT_REQUEST)))
        with self._write() as db:
            owner = self._owner(db, trace_id)
            if owner is not None and owner != agent_id:
                raise NotTraceOwner(trace_id)
            cursor = db.execute(
                "INSERT INTO trace_closes (trace_id, agent_id, status, root_request, at,"
                " received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO"
                " UPDATE SET agent_id = excluded.agent_id, status = excluded.status,"
                " root_request = excluded.root_request, at = excluded.at,"
                " received_at = excluded.received_at, body = excluded.body"
                " WHERE trace_closes.agent_id != excluded.agent_id",
                (*row, now if at is None else at, now, dump_json(close)),
            )
        return cursor.rowcount == 1

    # -- decisions & approvals -------------------------------------------------------------------

    def add_decision(self, record: DecisionRecord) -> None:
        try:
            with self._write() as db:
                insert(db, "decisions", record)
        except sqlite3.IntegrityError:
            raise ValueError(f"decision {record.decision_id} is already stored") from None

    def decisions(self, trace_id: str | None = None) -> list[DecisionRecord]:
        rows = self._all(
            "SELECT * FROM decisions WHERE ?1 IS NULL OR trace_id = ?1 ORDER BY seq", trace_id
        )
        return [decode(DecisionRecord, row) for row in rows]

    def create_approval(
        self,
        approval_id: str,
        decision_id: str,
        agent_id: str,
        permission: str,
        context: Any,
        trace_id: str | None,
        ttl_s: float,
    ) -> Approval:
        now = self._clock()
        who = (approval_id, decision_id, agent_id, permission, context, trace_id)
        approval = Approval(*who, "pending", now, now + ttl_s, None)
        with self._write() as db:
            insert(db, "approvals", approval)
        return approval

    def _approval(self, row: sqlite3.Row, now: float) -> Approval:
        """The effective approval: a pending one past its expiry reads as expired."""
        approval = decode(Approval, row)
        if approval.status == "pending" and approval.expires_at <= now:
            return replace(approval, status="expired")
        return approval

    def approval(self, approval_id: str) -> Approval | None:
        rows = self._all("SELECT * FROM approvals WHERE approval_id = ?", approval_id)
        return self._approval(rows[0], self._clock()) if rows else None

    def approvals(self, status: str | None = None) -> list[Approval]:
        now = self._clock()
        rows = self._all("SELECT * FROM approvals ORDER BY created_at, rowid")
        found = [self._approval(row, now) for row in rows]
        return [a for a in found if status is None or a.status == status]

    def decide_approval(self, approval_id: str, approved: bool) -> Approval:
        now = self._clock()
        with self._write() as db:
            row = db.execute("SELECT * FROM approvals WHERE approval_id = ?", (approval_id,))
            found = row.fetchone()
            if found is None:
                raise KeyError(approval_id)
            current = self._approval(found, now)
            if current.status != "pending":
                raise ValueError(f"approval {approval_id} is {current.status}, not pending")
            decided = replace(current, status="approved" if approved else "denied", decided_at=now)
            db.execute(
                "UPDATE approvals SET status = ?, decided_at = ? WHERE approval_id = ?",
                (decided.status, now, approval_id),
            )
        return decided

    def release_approval(self, approval_id: str) -> bool:
        """Spend an approved approval on its call: True the first time, False ever after (or
        when it is not approved). One statement, so two workers cannot both release it."""
        with self._write() as db:
            released = db.execute(
                "UPDATE approvals SET released_at = ? WHERE approval_id = ? "
                "AND status = 'approved' AND released_at IS NULL",
                (self._clock(), approval_id),
            )
            return released.rowcount == 1

    # -- delegation ------------------------------------------------------------------------------

    def create_grant(self, grant: Grant) -> None:
        try:
            with self._write() as db:
                insert(db, "grants", grant)
        except sqlite3.IntegrityError:
            raise ValueError(f"grant {grant.grant_id} is already stored") from None

    def grant(self, grant_id: str) -> Grant | None:
        rows = self._all("SELECT * FROM grants WHERE grant_id = ?", grant_id)
        return decode(Grant, rows[0]) if rows else None

    def revoke_grant(self, grant_id: str) -> list[str]:
        """Revokes the grant and its whole subtree; returns every id in it, root first."""
        with self._write() as db:
            rows = db.execute(
                "WITH RECURSIVE sub(id, depth, pos) AS (SELECT grant_id, 0, rowid FROM grants"
                " WHERE grant_id = ? UNION SELECT g.grant_id, sub.depth + 1, g.rowid FROM grants g"
                " JOIN sub ON g.parent_id = sub.id) SELECT id FROM sub ORDER BY depth, pos",
                (grant_id,),
            ).fetchall()
            if not rows:
                raise KeyError(grant_id)
            ids = [str(row[0]) for row in rows]
            db.executemany("UPDATE grants SET revoked = 1 WHERE grant_id = ?", [(i,) for i in ids])
        return ids

    def grant_usable(self, grant_id: str, now: float | None = None) -> bool:
        """Exists, unexpired, and neither it nor any ancestor is revoked.

        A dangling parent id makes the grant unusable: a chain that cannot be checked grants
        nothing.
        """
        when = self._clock() if now is None else now
        rows = self._all(
            "WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT g.parent_id FROM grants g"
            " JOIN up ON g.grant_id = up.id WHERE g.parent_id IS NOT NULL)"
            " SELECT up.id, g.revoked, g.expires_at FROM up LEFT JOIN grants g ON g.grant_id = up.id",
            grant_id,
        )
        own = next(row for row in rows if row[0] == grant_id)
        if own[1] is None or own[2] <= when:
            return False
        return all(row[1] == 0 for row in rows)

    # -- LLM token budget ------------------------------------------------------------------------

    def reserve_tokens(
        self,
        agent_id: str,
        tokens: int,
        trace_id: str | None,
        decision_id: str,
        *,
        budget: int | None = None,
    ) -> bool:
        """Reserves `tokens`; with a `budget`, only if they fit beside what is committed.

        Check and reservation are one write transaction, so concurrent calls (threads of the
        served platform, or another process on the same file) cannot each see the same room
        and together overspend it. False: they did not fit, nothing was reserved.
        """
        with self._write() as db:
            if budget is not None and _committed(db, agent_id) + tokens > budget:
                return False
            db.execute(
                "INSERT INTO token_ledger (agent_id, trace_id, decision_id, reserved, state,"
                " created_at) VALUES (?, ?, ?, ?, 'reserved', ?)",
                (agent_id, trace_id, decision_id, tokens, self._clock()),
            )
        return True

    def tokens_committed(self, agent_id: str) -> int:
        """Used tokens plus those still reserved: what a new reservation must fit beside."""
        with self._lock:
            return _committed(self._conn, agent_id)

    def reconcile_tokens(
        self,
        agent_id: str,
        trace_id: str | None,
        actual_tokens: int,
        reservation_id: str | None = None,
    ) -> bool:
        """Turns the matching open reservation into actual use; without one, records use anyway.

        An event that names its reservation (the `llm:call` decision id) reconciles that one
        only, and only if it is this agent's: the same id from another agent, or one already
        settled, is use without a reservation. An event naming none (an older SDK) takes its
        trace's oldest open reservation, else the agent's; but a usage of 0 then frees nothing,
        since it cannot say which reservation it ends."""
        with self._write() as db:
            if reservation_id is not None:
                row = db.execute(
                    "SELECT seq FROM token_ledger WHERE agent_id = ? AND decision_id = ?"
                    " AND state = 'reserved'",
                    (agent_id, reservation_id),
                ).fetchone()
            elif actual_tokens > 0:
                row = db.execute(
                    "SELECT seq FROM token_ledger WHERE agent_id = ? AND state = 'reserved'"
                    " ORDER BY (trace_id IS ? AND ? IS NOT NULL) DESC, seq LIMIT 1",
                    (agent_id, trace_id, trace_id),
                ).fetchone()
            else:
                row = None
            if row is not None:
                db.execute(
                    "UPDATE token_ledger SET state = 'reconciled', used = ? WHERE seq = ?",
                    (actual_tokens, row[0]),
                )
                return True
            db.execute(
                "INSERT INTO token_ledger (agent_id, trace_id, reserved, used, state, created_at)"
                " VALUES (?, ?, 0, ?, 'unreserved', ?)",
                (agent_id, trace_id, actual_tokens, self._clock()),
            )
            return False

    def release_tokens(self, agent_id: str, trace_id: str) -> int:
        """Releases the agent's reservations in a closed trace that no llm_call settled (a
        crashed or cut-off call): they count 0 used. Returns how many were released."""
        with self._write() as db:
            return db.execute(
                "UPDATE token_ledger SET state = 'released', used = 0"
                " WHERE agent_id = ? AND trace_id = ? AND state = 'reserved'",
                (agent_id, trace_id),
            ).rowcount

    def reservations(self, trace_id: str) -> dict[str, tuple[int, int | None, str]]:
        """The trace's token reservations by decision id: (reserved, used, state)."""
        rows = self._all(
            "SELECT decision_id, reserved, used, state FROM token_ledger"
            " WHERE trace_id = ? AND decision_id IS NOT NULL",
            trace_id,
        )
        return {row[0]: (int(row[1]), row[2], str(row[3])) for row in rows}

    def tokens_used(self, agent_id: str) -> int:
        rows = self._all("SELECT TOTAL(used) FROM token_ledger WHERE agent_id = ?", agent_id)
        return int(rows[0][0])

    # -- settings --------------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        rows = self._all("SELECT value FROM settings WHERE key = ?", key)
        return str(rows[0][0]) if rows else None

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    def set_setting_if_absent(self, key: str, value: str) -> str:
        """The first writer wins, across threads and processes; everyone gets the stored value."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (key, value))
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    # -- queries for the CLI ---------------------------------------------------------------------

    def traces(self, last: int = 20) -> list[TraceSummary]:
        """The `last` traces by start, newest first; any event, decision or close names one."""
        with self._read() as db:
            ids = db.execute(
                "SELECT trace_id, MIN(at) AS started FROM ("
                " SELECT trace_id, at FROM events WHERE trace_id IS NOT NULL UNION ALL"
                " SELECT trace_id, created_at FROM decisions WHERE trace_id IS NOT NULL UNION ALL"
                " SELECT trace_id, at FROM trace_closes)"
                " GROUP BY trace_id ORDER BY started DESC, trace_id DESC LIMIT ?",
                (max(last, 0),),
            ).fetchall()
            return [_summary(db, row[0], row[1]) for row in ids]

    def timeline(self, trace_id: str) -> list[TimelineEntry]:
        """Everything in a trace by time; equal times keep events, decisions, approvals, close."""
        now = self._clock()
        with self._read() as db:

            def rows(sql: str) -> list[sqlite3.Row]:
                return db.execute(sql, (trace_id,)).fetchall()

            entries = [
                TimelineEntry(r["at"], "event", json.loads(r["body"]))
                for r in rows("SELECT at, body FROM events WHERE trace_id = ? ORDER BY seq")
            ]
            entries += [
                TimelineEntry(r["created_at"], "decision", asdict(decode(DecisionRecord, r)))
                for r in rows("SELECT * FROM decisions WHERE trace_id = ? ORDER BY seq")
            ]
            entries += [
                TimelineEntry(r["created_at"], "approval", asdict(self._approval(r, now)))
                for r in rows(
                    "SELECT * FROM approvals WHERE trace_id = ?1 OR decision_id IN (SELECT"
                    " decision_id FROM decisions WHERE trace_id = ?1) ORDER BY created_at, rowid"
                )
            ]
            entries += [
                TimelineEntry(r["at"], "close", json.loads(r["body"]))
                for r in rows("SELECT at, body FROM trace_closes WHERE trace_id = ?")
            ]
        return sorted(entries, key=lambda entry: entry.at)


def _committed(db: sqlite3.Connection, agent_id: str) -> int:
    # TOTAL, not SUM: SUM raises "integer overflow" past 2**63, which the counts of many events
    # can reach; TOTAL adds as floats and never fails.
    row = db.execute(
        "SELECT TOTAL(CASE WHEN state = 'reserved' THEN reserved ELSE used END)"
        " FROM token_ledger WHERE agent_id = ?",
        (agent_id,),
    ).fetchone()
    return int(row[0])


def _summary(db: sqlite3.Connection, trace_id: str, started: float) -> TraceSummary:
    ev = db.execute(
        "SELECT COUNT(*),"
        " (SELECT root_request FROM events WHERE trace_id = ?1 AND root_request IS NOT NULL"
        "  ORDER BY seq LIMIT 1)"
        " FROM events WHERE trace_id = ?1",
        (trace_id,),
    ).fetchone()
    dec = db.execute("SELECT COUNT(*) FROM decisions WHERE trace_id = ?", (trace_id,)).fetchone()
    owner = db.execute(_OWNER_SQL, (trace_id,)).fetchone()
    close = db.execute(
        "SELECT agent_id, status, root_request, at FROM trace_closes WHERE trace_id = ?",
        (trace_id,),
    ).fetchone() or (None, None, None, None)
    return TraceSummary(
        trace_id=trace_id,
        agent_id=(owner[0] if owner else None) or close[0] or "",
        root_request=ev[1] or close[2],
        status=close[1],
        started_at=started,
        ended_at=close[3],
        event_count=int(ev[0]),
        decision_count=int(dec[0]),
    )
