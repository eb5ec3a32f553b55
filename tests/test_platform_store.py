"""The platform store: idempotent ingest, ids, approvals, grants, token budget, CLI queries."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracengent.platform._store import (
    DecisionRecord,
    Grant,
    Store,
    parse_time,
)
from tracengent.platform._store_schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A settable clock, so expiry is tested without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Iterator[Store]:
    s = Store(clock=clock)
    yield s
    s.close()


def event(event_id: str, trace_id: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"eventId": event_id, "agentId": "demo-agent", "type": "action"}
    if trace_id is not None:
        body["traceId"] = trace_id
    body.update(extra)
    return body


def decision(decision_id: str, trace_id: str | None, at: float, **extra: Any) -> DecisionRecord:
    fields: dict[str, Any] = {
        "decision_id": decision_id,
        "kind": "authorize",
        "agent_id": "demo-agent",
        "trace_id": trace_id,
        "permission": "payments:refund",
        "status": "allowed",
        "outcome": None,
        "reason": "policy allows",
        "context": {"amount": 10},
        "approval_id": None,
        "acting_for": None,
        "chain": None,
        "created_at": at,
    }
    fields.update(extra)
    return DecisionRecord(**fields)


def grant(grant_id: str, parent_id: str | None, expires_at: float = 2e9) -> Grant:
    return Grant(
        grant_id=grant_id,
        parent_id=parent_id,
        agent_id="agent-b",
        acting_for="user-1",
        chain=("user-1", "agent-a", "agent-b"),
        permissions=("flights:*",),
        max_amount=500.0,
        expires_at=expires_at,
        revoked=False,
        created_at=1.0,
    )


# -- telemetry -----------------------------------------------------------------------------------


def test_a_retried_batch_and_a_repeat_within_a_batch_store_nothing_twice(store: Store) -> None:
    fresh = store.add_events("demo-agent", [event("evt_1"), event("evt_2"), event("evt_1")])
    assert [e["eventId"] for e in fresh] == ["evt_1", "evt_2"]
    fresh = store.add_events("demo-agent", [event("evt_2"), event("evt_3")])
    assert [e["eventId"] for e in fresh] == ["evt_3"]
    assert store.event_count() == 3
    assert [e["eventId"] for e in store.events()] == ["evt_1", "evt_2", "evt_3"]


def test_events_keep_the_whole_body_and_filter_by_trace_and_agent(store: Store) -> None:
    first = event("evt_1", "trc_a", name="lookup", cost={"amount": 1.5, "currency": "EUR"})
    first["input"] = {"city": "Zürich"}
    store.add_events("demo-agent", [first, event("evt_2", "trc_b")])
    store.add_events("other-agent", [event("evt_3", "trc_a")])
    assert store.events(trace_id="trc_a") == [first, event("evt_3", "trc_a")]
    assert [e["eventId"] for e in store.events(agent_id="demo-agent")] == ["evt_1", "evt_2"]
    assert [e["eventId"] for e in store.events("trc_a", "other-agent")] == ["evt_3"]
    assert store.events(trace_id="trc_none") == []


def test_odd_values_inside_events_never_raise(store: Store) -> None:
    odd: list[dict[str, Any]] = [
        {"eventId": 7, "traceId": ["x"], "occurredAt": "yesterday"},
        {"type": "action"},
        {"eventId": "evt_set", "attributes": {1, 2}},
    ]
    assert len(store.add_events("demo-agent", odd)) == 3
    assert store.events()[0] == odd[0]
    assert isinstance(store.events()[2]["attributes"], str)


def test_a_trace_is_closed_once(store: Store) -> None:
    close = {"traceId": "trc_a", "agentId": "demo-agent", "op": "Close", "status": "completed"}
    assert store.add_trace_close("demo-agent", close)
    assert not store.add_trace_close("demo-agent", {**close, "status": "failed"})
    assert not store.add_trace_close("demo-agent", {"op": "Close"})
    assert store.traces()[0].status == "completed"


def test_a_file_store_creates_its_folders_uses_wal_and_survives_reopening(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    first = Store.in_data_dir(data_dir)
    first.add_events("demo-agent", [event("evt_1")])
    first.close()
    path = data_dir / "platform.sqlite3"
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    again = Store(path)
    assert again.add_events("demo-agent", [event("evt_1")]) == []
    again.close()


def test_a_second_store_on_the_same_file_sees_the_writes(tmp_path: Path) -> None:
    server, cli = Store(tmp_path / "p.db"), Store(tmp_path / "p.db")
    try:
        server.add_events("demo-agent", [event("evt_1", "trc_a")])
        assert cli.event_count() == 1
        cli.set_setting("signing_key", "k1")
        assert server.get_setting("signing_key") == "k1"
        assert [t.trace_id for t in cli.traces()] == ["trc_a"]
    finally:
        server.close()
        cli.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "p.db") as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        Store(tmp_path / "p.db")


@pytest.mark.parametrize("on_file", [False, True])
def test_eight_threads_writing_distinct_events_store_all_of_them(
    tmp_path: Path, on_file: bool
) -> None:
    store = Store(tmp_path / "p.db" if on_file else None)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for batch in range(10):
                store.add_events("demo-agent", [event(f"evt_{n}_{batch}_{i}") for i in range(20)])
                store.add_events("demo-agent", [event(f"evt_{n}_{batch}_0")])  # a retry
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.event_count() == 8 * 10 * 20
    store.close()


# -- ids -----------------------------------------------------------------------------------------


def test_ids_are_monotonic_per_prefix_and_never_reused_after_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    assert [store.new_id("dec") for _ in range(3)] == ["dec_1", "dec_2", "dec_3"]
    assert store.new_id("apr") == "apr_1"
    store.close()
    store = Store(tmp_path / "p.db")
    assert store.new_id("dec") == "dec_4"
    assert store.new_id("apr") == "apr_2"
    store.close()


def test_ids_stay_unique_across_threads_and_a_second_process(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = Store(path)
    ids: list[str] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            new = store.new_id("dec")
            with lock:
                ids.append(new)

    script = (
        "import sys\n"
        "from tracengent.platform._store import Store\n"
        "s = Store(sys.argv[1])\n"
        "print(' '.join(s.new_id('dec') for _ in range(100)))\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out, _ = other.communicate(timeout=60)
    assert other.returncode == 0
    ids += out.split()
    assert sorted(ids, key=lambda i: int(i.split("_")[1])) == [f"dec_{n}" for n in range(1, 301)]
    store.close()


# -- decisions & approvals -----------------------------------------------------------------------


def test_decisions_round_trip_and_filter_by_trace(store: Store) -> None:
    delegated = decision("dec_2", "trc_a", 2.0, acting_for="user-1", chain=("user-1", "a"))
    store.add_decision(decision("dec_1", None, 1.0, context=None))
    store.add_decision(delegated)
    assert store.decisions("trc_a") == [delegated]
    assert [d.decision_id for d in store.decisions()] == ["dec_1", "dec_2"]
    assert store.decisions()[0].context is None
    with pytest.raises(ValueError, match="dec_1"):
        store.add_decision(decision("dec_1", None, 3.0))


def test_a_tool_decision_keeps_its_tool_across_reopening(tmp_path: Path) -> None:
    http = decision(
        "dec_1", "trc_a", 1.0, kind="tool", permission=None, status="denied", tool="GET x.io/a",
        transport="http", outcome="egress_deny",
    )  # fmt: skip
    mcp = decision("dec_2", "trc_a", 2.0, kind="tool", tool="wipe_disk", transport="mcp")
    store = Store(tmp_path / "p.db")
    for record in (http, mcp, decision("dec_3", "trc_a", 3.0)):
        store.add_decision(record)
    store.close()
    store = Store(tmp_path / "p.db")
    assert store.decisions()[:2] == [http, mcp]
    assert (store.decisions()[2].tool, store.decisions()[2].transport) == (None, None)
    assert store.timeline("trc_a")[1].data["tool"] == "wipe_disk"
    store.close()


# What `decisions` was before tools were stored: a ~/.tracengent made by an older version.
OLD_DECISIONS = """
CREATE TABLE decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, decision_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    agent_id TEXT NOT NULL, trace_id TEXT, permission TEXT, status TEXT NOT NULL, outcome TEXT,
    reason TEXT NOT NULL, context TEXT, approval_id TEXT, acting_for TEXT, chain TEXT,
    created_at REAL NOT NULL)
"""


def test_an_old_database_gets_the_tool_columns_and_keeps_its_decisions(tmp_path: Path) -> None:
    path = tmp_path / "platform.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute(OLD_DECISIONS)
        raw.execute(
            "INSERT INTO decisions (decision_id, kind, agent_id, permission, status, reason,"
            " created_at) VALUES ('dec_1', 'tool', 'demo-agent', 'crm:read', 'allowed', 'ok', 1)"
        )
        raw.execute("PRAGMA user_version = 1")
    raw.close()

    store = Store(path)
    [old] = store.decisions()
    assert (old.decision_id, old.permission, old.tool, old.transport) == (
        "dec_1",
        "crm:read",
        None,
        None,
    )
    new = decision("dec_2", None, 2.0, kind="tool", tool="lookup_customer", transport="mcp")
    store.add_decision(new)
    store.close()
    again = Store(path)  # the columns are there now: opening adds nothing twice
    assert again.decisions() == [old, new]
    again.close()
    with sqlite3.connect(path) as raw:
        columns = [row[1] for row in raw.execute("PRAGMA table_info(decisions)")]
        assert columns[-3:] == ["created_at", "tool", "transport"]
        # a nullable column added, not a new schema: an older tracengent still opens the file
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    raw.close()


def test_an_approval_is_decided_once(store: Store, clock: Clock) -> None:
    created = store.create_approval(
        "apr_1", "dec_1", "demo-agent", "payments:refund", {"amount": 900}, "trc_a", 60
    )
    assert created.status == "pending"
    assert created.expires_at == clock.now + 60
    assert store.approval("apr_1") == created
    assert store.approvals("pending") == [created]
    clock.now += 5
    approved = store.decide_approval("apr_1", approved=True)
    assert (approved.status, approved.decided_at) == ("approved", clock.now)
    assert store.approval("apr_1") == approved
    assert store.approvals("pending") == []
    with pytest.raises(ValueError, match="approved"):
        store.decide_approval("apr_1", approved=False)
    with pytest.raises(KeyError):
        store.decide_approval("apr_missing", approved=True)
    assert store.approval("apr_missing") is None


def test_a_pending_approval_past_its_expiry_reads_as_expired(store: Store, clock: Clock) -> None:
    store.create_approval("apr_1", "dec_1", "demo-agent", "p", None, None, 10)
    store.create_approval("apr_2", "dec_2", "demo-agent", "p", None, None, 100)
    store.decide_approval("apr_2", approved=False)
    clock.now += 10
    expired = store.approval("apr_1")
    assert expired is not None
    assert expired.status == "expired"
    assert [a.approval_id for a in store.approvals("expired")] == ["apr_1"]
    assert [a.approval_id for a in store.approvals("denied")] == ["apr_2"]
    assert [a.approval_id for a in store.approvals()] == ["apr_1", "apr_2"]
    with pytest.raises(ValueError, match="expired"):
        store.decide_approval("apr_1", approved=True)


# -- delegation ----------------------------------------------------------------------------------


def test_revoking_a_grant_revokes_everything_attenuated_from_it(store: Store) -> None:
    for gid, parent in [
        ("dlg_1", None),
        ("dlg_2", "dlg_1"),
        ("dlg_3", "dlg_2"),
        ("dlg_4", "dlg_1"),
    ]:
        store.create_grant(grant(gid, parent))
    assert store.grant("dlg_2") == grant("dlg_2", "dlg_1")
    assert store.revoke_grant("dlg_2") == ["dlg_2", "dlg_3"]
    assert [store.grant_usable(g) for g in ("dlg_1", "dlg_2", "dlg_3", "dlg_4")] == [
        True,
        False,
        False,
        True,
    ]
    revoked = store.grant("dlg_3")
    assert revoked is not None
    assert revoked.revoked
    assert store.revoke_grant("dlg_1") == ["dlg_1", "dlg_2", "dlg_4", "dlg_3"]
    with pytest.raises(KeyError):
        store.revoke_grant("dlg_missing")
    with pytest.raises(ValueError, match="dlg_1"):
        store.create_grant(grant("dlg_1", None))


def test_a_grant_is_unusable_once_expired_or_an_ancestor_is_revoked(
    store: Store, clock: Clock
) -> None:
    store.create_grant(grant("dlg_1", None, expires_at=clock.now + 100))
    store.create_grant(grant("dlg_2", "dlg_1", expires_at=clock.now + 50))
    store.create_grant(grant("dlg_3", "dlg_missing"))
    assert store.grant_usable("dlg_2")
    assert not store.grant_usable("dlg_2", now=clock.now + 50)
    clock.now += 60
    assert not store.grant_usable("dlg_2")
    assert store.grant_usable("dlg_1")
    assert not store.grant_usable("dlg_3")  # its parent cannot be checked
    assert not store.grant_usable("dlg_unknown")
    store.revoke_grant("dlg_1")
    assert not store.grant_usable("dlg_2", now=0)


# -- LLM token budget ----------------------------------------------------------------------------


def test_reservations_are_reconciled_by_trace_then_oldest(store: Store) -> None:
    store.reserve_tokens("a", 100, "trc_1", "dec_1")
    store.reserve_tokens("a", 50, "trc_2", "dec_2")
    store.reserve_tokens("a", 30, None, "dec_3")
    store.reserve_tokens("b", 999, "trc_1", "dec_4")
    assert (store.tokens_committed("a"), store.tokens_used("a")) == (180, 0)
    assert store.reconcile_tokens("a", "trc_2", 70)  # the trace's own reservation
    assert (store.tokens_committed("a"), store.tokens_used("a")) == (200, 70)
    assert store.reconcile_tokens("a", "trc_other", 10)  # else the agent's oldest: trc_1's 100
    assert (store.tokens_committed("a"), store.tokens_used("a")) == (110, 80)
    assert store.reconcile_tokens("a", None, 25)  # the last open one, the 30
    assert (store.tokens_committed("a"), store.tokens_used("a")) == (105, 105)
    assert not store.reconcile_tokens("a", "trc_1", 5)  # nothing open: counted anyway
    assert (store.tokens_committed("a"), store.tokens_used("a")) == (110, 110)
    assert (store.tokens_committed("b"), store.tokens_used("b")) == (999, 0)
    assert store.tokens_committed("nobody") == 0


# -- settings ------------------------------------------------------------------------------------


def test_settings_and_the_first_writer_wins(tmp_path: Path) -> None:
    store, other = Store(tmp_path / "p.db"), Store(tmp_path / "p.db")
    assert store.get_setting("signing_key") is None
    results: list[str] = []
    lock = threading.Lock()

    def race(n: int) -> None:
        stored = (store if n % 2 else other).set_setting_if_absent("signing_key", f"key-{n}")
        with lock:
            results.append(stored)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert store.get_setting("signing_key") == results[0]
    store.set_setting("signing_key", "rotated")
    assert other.get_setting("signing_key") == "rotated"
    store.close()
    other.close()


# -- queries for the CLI -------------------------------------------------------------------------


def test_trace_summaries_newest_first(store: Store, clock: Clock) -> None:
    clock.now = parse_time("2024-01-03T00:00:00Z") or 0
    store.add_events(
        "demo-agent",
        [
            event("evt_1", "trc_old", occurredAt="2024-01-01T10:00:00Z", rootRequest="refund"),
            event("evt_2", "trc_old", occurredAt="2024-01-01T10:00:05Z"),
            event("evt_3", "trc_new", occurredAt="2024-01-02T10:00:00+00:00"),
        ],
    )
    store.add_decision(decision("dec_1", "trc_old", parse_time("2024-01-01T10:00:01Z") or 0))
    store.add_trace_close(
        "demo-agent",
        {"traceId": "trc_old", "status": "failed", "occurredAt": "2024-01-01T10:00:09Z"},
    )
    store.add_decision(decision("dec_2", "trc_decided", clock.now, agent_id="other"))
    store.add_events("demo-agent", [event("evt_4")])  # no trace

    newest, middle, oldest = store.traces()
    assert (newest.trace_id, newest.agent_id, newest.event_count) == ("trc_decided", "other", 0)
    assert newest.decision_count == 1
    assert middle.trace_id == "trc_new"
    assert (middle.status, middle.ended_at, middle.root_request) == (None, None, None)
    assert oldest.trace_id == "trc_old"
    assert (oldest.agent_id, oldest.root_request, oldest.status) == (
        "demo-agent",
        "refund",
        "failed",
    )
    assert oldest.started_at == parse_time("2024-01-01T10:00:00Z")
    assert oldest.ended_at == parse_time("2024-01-01T10:00:09Z")
    assert (oldest.event_count, oldest.decision_count) == (2, 1)
    assert [t.trace_id for t in store.traces(last=1)] == ["trc_decided"]
    assert store.traces(last=0) == []


def test_the_timeline_orders_everything_by_time(store: Store, clock: Clock) -> None:
    start = parse_time("2024-01-01T10:00:00Z") or 0
    clock.now = start + 30  # arrival time of events without a readable occurredAt
    store.add_events(
        "demo-agent",
        [
            event("evt_late", "trc_a", occurredAt="2024-01-01T10:00:20.1234567Z"),
            event("evt_first", "trc_a", occurredAt="2024-01-01T11:00:00+01:00"),
            event("evt_unreadable", "trc_a", occurredAt="not a time"),
        ],
    )
    store.add_decision(decision("dec_1", "trc_a", start + 10, status="pending_approval"))
    clock.now = start + 11
    store.create_approval("apr_1", "dec_1", "demo-agent", "payments:refund", None, None, 60)
    store.add_trace_close("demo-agent", {"traceId": "trc_a", "occurredAt": "2024-01-01T10:00:40"})
    store.add_events("demo-agent", [event("evt_elsewhere", "trc_b")])

    entries = store.timeline("trc_a")
    assert [(e.kind, e.at - start) for e in entries] == [
        ("event", 0),
        ("decision", 10),
        ("approval", 11),
        ("event", pytest.approx(20.123456)),
        ("event", 30),
        ("close", 40),
    ]
    assert entries[0].data["eventId"] == "evt_first"
    assert entries[1].data["decision_id"] == "dec_1"
    assert entries[2].data["status"] == "pending"
    assert entries[5].data == {"traceId": "trc_a", "occurredAt": "2024-01-01T10:00:40"}
    assert store.timeline("trc_unknown") == []


def test_parse_time_reads_the_iso_forms_on_the_wire() -> None:
    assert parse_time("1970-01-01T00:00:01Z") == 1.0
    assert parse_time("1970-01-01T01:00:01+01:00") == 1.0
    assert parse_time("1970-01-01T00:00:01.5") == 1.5
    assert parse_time("1970-01-01T00:00:01.25+00:00") == 1.25
    for bad in ("", "soon", None, 3, "2024-13-01T00:00:00Z"):
        assert parse_time(bad) is None
