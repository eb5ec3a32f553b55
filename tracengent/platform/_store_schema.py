"""The store's SQLite schema, and how an older database is brought up to it.

Kept apart from the queries (`_store`): a schema change is a change here and a migration here,
and the rule that keeps an older CLI working on a newer database (columns added, never
renamed; SCHEMA_VERSION bumped only for a change an older version cannot read) lives in one place.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 1

# Columns of decisions, approvals and grants are named after the dataclass fields they hold.
_EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    trace_id TEXT, type TEXT, name TEXT, occurred_at TEXT, root_request TEXT,
    at REAL NOT NULL, received_at REAL NOT NULL, body TEXT NOT NULL,
    UNIQUE (agent_id, event_id))"""
_EVENTS_INDEXES = """
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id);
CREATE INDEX IF NOT EXISTS events_agent ON events (agent_id);
"""
_EVENT_COLUMNS = (
    "seq, event_id, agent_id, trace_id, type, name, occurred_at, root_request, at, received_at,"
    " body"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS counters (prefix TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{_EVENTS_TABLE.format(name="events")};
{_EVENTS_INDEXES}
CREATE TABLE IF NOT EXISTS trace_closes (
    trace_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, status TEXT, root_request TEXT,
    at REAL NOT NULL, received_at REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, decision_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    agent_id TEXT NOT NULL, trace_id TEXT, permission TEXT, status TEXT NOT NULL, outcome TEXT,
    reason TEXT NOT NULL, context TEXT, approval_id TEXT, acting_for TEXT, chain TEXT,
    created_at REAL NOT NULL, tool TEXT, transport TEXT);
CREATE INDEX IF NOT EXISTS decisions_trace ON decisions (trace_id);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY, decision_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    permission TEXT NOT NULL, context TEXT, trace_id TEXT, status TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, decided_at REAL);
CREATE INDEX IF NOT EXISTS approvals_decision ON approvals (decision_id);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY, parent_id TEXT, agent_id TEXT NOT NULL, acting_for TEXT NOT NULL,
    chain TEXT NOT NULL, permissions TEXT NOT NULL, max_amount REAL, expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS grants_parent ON grants (parent_id);
CREATE TABLE IF NOT EXISTS token_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, trace_id TEXT,
    decision_id TEXT, reserved INTEGER NOT NULL, used INTEGER,
    state TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS token_ledger_agent ON token_ledger (agent_id, state);
"""
# Nullable columns added since a table was first created: a database made by an older version
# gets them on open. Older code reads and writes such a database unchanged (it names its columns),
# so adding one does not bump SCHEMA_VERSION, which would lock an older CLI out of ~/.tracengent.
# The same holds for `events` losing its global UNIQUE (event_id) for UNIQUE (agent_id, event_id):
# see `_dedupe_events_per_agent`.
_ADDED_COLUMNS = (
    ("decisions", "tool", "TEXT"),
    ("decisions", "transport", "TEXT"),
    ("approvals", "released_at", "REAL"),
)


def migrate(db: sqlite3.Connection) -> None:
    """Creates the tables, or brings an older database up to this schema (refusing a newer one).

    Runs in the caller's write transaction, so a failed step leaves the database as it was.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"store schema {version} is newer than {SCHEMA_VERSION}")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    _dedupe_events_per_agent(db)
    # Migrations from an older `version` go here.
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _dedupe_events_per_agent(db: sqlite3.Connection) -> None:
    """Rebuilds an older `events` table whose event ids were unique across all agents.

    SQLite cannot drop a UNIQUE constraint in place, so the rows move to a table of the current
    shape (seq kept, so order and AUTOINCREMENT carry over) that then takes the old name. An
    older tracengent still reads and writes the result: it names its columns, and its
    INSERT OR IGNORE now de-duplicates per agent too.
    """
    for index in db.execute("PRAGMA index_list(events)").fetchall():
        if not index["unique"]:
            continue
        name = str(index["name"]).replace('"', '""')
        columns = [row["name"] for row in db.execute(f'PRAGMA index_info("{name}")')]
        if columns == ["event_id"]:
            break
    else:
        return
    db.execute(_EVENTS_TABLE.format(name="events_per_agent"))
    db.execute(
        f"INSERT INTO events_per_agent ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM events"
    )
    db.execute("DROP TABLE events")
    db.execute("ALTER TABLE events_per_agent RENAME TO events")
    for statement in _EVENTS_INDEXES.split(";"):
        if statement.strip():
            db.execute(statement)
