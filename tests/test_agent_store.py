"""agent/store.py on SQLite and on a real PostgreSQL server: the same tests for both."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from gridcast.agent.store import (
    DeviceRecord,
    DriftAggregate,
    SqliteStore,
    StoreError,
    TelemetryBatch,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite://{tmp_path}/agent.db")
    else:
        url = request.getfixturevalue("postgres_url")
        s = open_store(url)
        s._transaction([(f"DROP TABLE IF EXISTS {t}", ()) for t in
                        ("devices", "telemetry", "drift_1s", "drift_1m", "gaps", "bundles",
                         "deployments")])
        s.init_schema()
    yield s
    s.close()


def batch(device="d1", seq=0, drift=(100, -200, 300), received=1_000_000, boot=7):
    return TelemetryBatch(device, seq, received, 5, list(drift), 12, 415, 90000, {3: 1}, boot)


def test_batches_round_trip_and_duplicates_are_ignored(store):
    store.add_telemetry([batch(seq=0), batch(seq=1, drift=(-2**31, 2**31 - 1))])
    store.add_telemetry([batch(seq=1, drift=(5,))])  # a redelivery: same (device, boot, seq)
    got = store.telemetry("d1")
    assert [b.seq for b in got] == [0, 1]
    assert got[1].drift_us == [-2**31, 2**31 - 1]
    assert got[0].error_counts == {3: 1} and got[0].temp_dc == 415 and got[0].boot == 7
    assert store.sample_count("d1") == 5 and store.sample_count() == 5


def test_a_reboot_restarts_seq_without_losing_data(store):
    store.add_telemetry([batch(seq=0, boot=1), batch(seq=0, boot=2)])
    assert store.batch_seqs("d1") == [0, 0]
    assert store.boots(0) == [("d1", 1), ("d1", 2)] or sorted(store.boots(0)) == [("d1", 1),
                                                                                  ("d1", 2)]


def test_aggregates_replace_their_bucket_and_gaps_are_recorded_once(store):
    store.add_telemetry([], aggregates_1s=[DriftAggregate("d1", 100, 3, 10, 20, 30)])
    store.add_telemetry([], aggregates_1s=[DriftAggregate("d1", 100, 4, 11, 21, 31)],
                        aggregates_1m=[DriftAggregate("d1", 60, 4, 11, 21, 31)])
    assert [vars(a) for a in store.aggregates("d1", "1s")] == [
        {"device_id": "d1", "bucket_s": 100, "count": 4, "p50_us": 11, "p99_us": 21, "max_us": 31}]
    assert len(store.aggregates("d1", "1m")) == 1
    store.add_telemetry([], gaps=[("d1", 7, 5, 2, 1)])
    store.add_telemetry([], gaps=[("d1", 7, 5, 2, 1)])  # found again by a second collector
    assert store.lost("d1") == 2


def test_samples_between_and_prune(store):
    store.add_telemetry([batch(seq=0, received=1_000_000), batch(seq=1, received=2_500_000),
                         batch(device="d2", seq=0, drift=(9,), received=2_000_000)])
    assert store.samples_between(2_000_000, 3_000_000) == {"d1": [100, -200, 300], "d2": [9]}
    store.add_telemetry([], aggregates_1s=[DriftAggregate("d1", 1, 1, 1, 1, 1),
                                           DriftAggregate("d1", 5, 1, 1, 1, 1)])
    store.prune(raw_before_us=2_000_000, seconds_before_s=3)
    assert [b.seq for b in store.telemetry("d1")] == [1]
    assert [a.bucket_s for a in store.aggregates("d1")] == [5]


def test_devices_bundles_and_deployments(store):
    store.upsert_device(DeviceRecord("d1", "online", 3, "song", 2, 123, True))
    store.upsert_device(DeviceRecord("d1", "lost", 3, "song", 2, 456, False))
    assert store.device("d1") == DeviceRecord("d1", "lost", 3, "song", 2, 456, False)
    assert store.device("nope") is None
    store.add_bundle("ab" * 32, "song", 2, 1000, "/x.gcb")
    store.add_bundle("ab" * 32, "song", 2, 1000, "/x.gcb")
    assert [b["track_id"] for b in store.bundles()] == ["song"]
    store.save_deployment("dep1", "ab" * 32, "canary", {"canaries": ["d1"]})
    store.save_deployment("dep1", "ab" * 32, "done", {"canaries": ["d1"], "activated": ["d1"]})
    (dep,) = store.deployments()
    assert dep["state"] == "done" and dep["activated"] == ["d1"]


def test_a_failed_write_stores_nothing(store):
    bad = DriftAggregate("d1", 1, None, 1, 1, 1)  # type: ignore[arg-type]  # NOT NULL count
    with pytest.raises(StoreError, match="nothing stored"):
        store.add_telemetry([batch(seq=0)], aggregates_1s=[bad])
    assert store.telemetry("d1") == []
    store.add_telemetry([batch(seq=0)])
    assert len(store.telemetry("d1")) == 1


def test_a_locked_sqlite_database_is_a_clear_error_and_loses_nothing(tmp_path):
    path = str(tmp_path / "agent.db")
    store = SqliteStore(path, timeout_s=0.2)
    store.add_telemetry([batch(seq=0)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="write lock"):
        store.add_telemetry([batch(seq=1)])
    other.execute("ROLLBACK")
    other.close()
    store.add_telemetry([batch(seq=1)])
    assert [b.seq for b in store.telemetry("d1")] == [0, 1]


def test_sqlite_reads_do_not_wait_for_a_write_transaction(tmp_path):
    store = SqliteStore(str(tmp_path / "agent.db"))
    store.upsert_device(DeviceRecord("d1", "online", 3, "song", 2, 123, True))
    states: list[str] = []
    with store._lock:  # the writer is in a transaction (as the collector's, mid-write)
        store.conn.execute("BEGIN IMMEDIATE")
        store.conn.execute("UPDATE devices SET state = 'lost' WHERE id = 'd1'")
        reader = threading.Thread(target=lambda: states.append(store.device("d1").state))
        reader.start()
        reader.join(5)
        assert states == ["online"]  # answered at once, with what was committed
        store.conn.execute("COMMIT")
    assert store.device("d1").state == "lost"  # and a commit is seen by the next read
    for _ in range(3):  # threads that read and end leave no connection open
        reader = threading.Thread(target=store.devices)
        reader.start()
        reader.join()
    store.devices()
    assert len(store._readers) <= 2
    store.close()


def test_an_in_memory_sqlite_store_reads_its_own_writes():
    store = SqliteStore(":memory:")
    store.add_telemetry([batch(seq=0)])
    assert [b.seq for b in store.telemetry("d1")] == [0]
    store.close()


def test_bad_database_urls_are_explained(tmp_path):
    with pytest.raises(StoreError, match="expected sqlite"):
        open_store("mysql://x/y")
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(str(tmp_path / "file" / "agent.db"))
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/none")


def test_sqlite_urls_take_the_path_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    open_store("sqlite://relative.db").close()
    assert (tmp_path / "relative.db").exists()
    open_store(f"sqlite://{tmp_path}/absolute.db").close()  # sqlite:///tmp/... -> /tmp/...
    assert (tmp_path / "absolute.db").exists()
    from gridcast.agent.config import AgentConfig

    assert AgentConfig().database == "sqlite://gridcast-agent.db"  # next to where it runs
