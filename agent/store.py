"""The agent's storage: one small interface, SQLite (WAL) by default, PostgreSQL by URL.

What is stored:

- ``devices``: the registry (state, firmware, active bundle, last seen, the light
  offset the agent keeps on the device and the one it last reported);
- ``telemetry``: one row per telemetry batch a device sent (sequence number,
  CPU, temperature, free memory, error counts) with its drift samples packed
  as little-endian int32 microseconds, so that 100,000 samples a second are a
  few thousand rows, not 100,000;
- ``drift_1s`` and ``drift_1m``: per device and second / minute, the count,
  p50, p99 and max of |drift|: the service level, kept long after the raw
  batches are dropped by retention;
- ``gaps``: sequence numbers that never arrived, per device;
- ``bundles`` and ``deployments``: what was deployed where, and how it went.

Every write happens in one transaction; a failed write (database locked, disk
full) raises StoreError and leaves the stored data as it was. On SQLite, reads go
through each thread's own read connection: in WAL mode they see every committed
write and neither wait for the writer (the collector's transactions) nor hold it up.
"""

from __future__ import annotations

import abc
import json
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from gridcast.protocol.errors import GridcastError


class StoreError(GridcastError):
    """The database refused a read or a write; nothing was half-written."""


@dataclass
class TelemetryBatch:
    device_id: str
    seq: int
    received_us: int
    device_us: int
    drift_us: Sequence[int]
    cpu_pct: int = 0
    temp_dc: int | None = None
    free_mem: int = 0
    error_counts: dict[int, int] = field(default_factory=dict)
    boot: int = 0  # random per device boot: seq restarts at 0 after a reboot


@dataclass
class DriftAggregate:
    device_id: str
    bucket_s: int  # start of the second or minute, Unix seconds
    count: int
    p50_us: int
    p99_us: int
    max_us: int


@dataclass
class DeviceRecord:
    id: str
    state: str = "unknown"
    fw_version: int = 0
    active_track: str = ""
    bundle_version: int = 0
    last_seen_us: int = 0
    online: bool = False
    light_offset_us: int | None = None  # what the agent keeps on the device (None: not set)
    reported_light_offset_us: int | None = None  # what the device last said it holds


SCHEMA = [
    """CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY, state TEXT NOT NULL, fw_version BIGINT NOT NULL,
        active_track TEXT NOT NULL, bundle_version BIGINT NOT NULL,
        last_seen_us BIGINT NOT NULL, online INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS telemetry (
        device_id TEXT NOT NULL, boot BIGINT NOT NULL, seq BIGINT NOT NULL,
        received_us BIGINT NOT NULL, device_us BIGINT NOT NULL, cpu_pct INTEGER NOT NULL,
        temp_dc INTEGER, free_mem BIGINT NOT NULL, errors TEXT NOT NULL,
        n_drift INTEGER NOT NULL, drift BYTEA NOT NULL, PRIMARY KEY (device_id, boot, seq))""",
    "CREATE INDEX IF NOT EXISTS telemetry_time ON telemetry (received_us)",
    """CREATE TABLE IF NOT EXISTS drift_1s (
        device_id TEXT NOT NULL, bucket_s BIGINT NOT NULL, count INTEGER NOT NULL,
        p50_us BIGINT NOT NULL, p99_us BIGINT NOT NULL, max_us BIGINT NOT NULL,
        PRIMARY KEY (device_id, bucket_s))""",
    """CREATE TABLE IF NOT EXISTS drift_1m (
        device_id TEXT NOT NULL, bucket_s BIGINT NOT NULL, count INTEGER NOT NULL,
        p50_us BIGINT NOT NULL, p99_us BIGINT NOT NULL, max_us BIGINT NOT NULL,
        PRIMARY KEY (device_id, bucket_s))""",
    """CREATE TABLE IF NOT EXISTS gaps (
        device_id TEXT NOT NULL, boot BIGINT NOT NULL, first_missing BIGINT NOT NULL,
        count BIGINT NOT NULL, noticed_us BIGINT NOT NULL,
        PRIMARY KEY (device_id, boot, first_missing))""",
    """CREATE TABLE IF NOT EXISTS bundles (
        sha256 TEXT PRIMARY KEY, track_id TEXT NOT NULL, bundle_version BIGINT NOT NULL,
        size BIGINT NOT NULL, path TEXT NOT NULL, added_us BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS deployments (
        id TEXT PRIMARY KEY, bundle_sha256 TEXT NOT NULL, state TEXT NOT NULL,
        created_us BIGINT NOT NULL, updated_us BIGINT NOT NULL, detail TEXT NOT NULL)""",
]
# Columns added after a table was first released: (table, column, type). A database made
# before gets them on open (ALTER TABLE ... ADD COLUMN; NULL in existing rows).
ADDED_COLUMNS = [
    ("devices", "light_offset_us", "BIGINT"),
    ("devices", "reported_light_offset_us", "BIGINT"),
]
_DEVICE_COLUMNS = ("id, state, fw_version, active_track, bundle_version, last_seen_us, online, "
                   "light_offset_us, reported_light_offset_us")


def pack_drift(values: Sequence[int]) -> bytes:
    clipped = [max(-(2**31), min(2**31 - 1, int(v))) for v in values]
    return struct.pack(f"<{len(clipped)}i", *clipped)


def unpack_drift(blob: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(blob) // 4}i", bytes(blob)))


class Store(abc.ABC):
    """The storage interface the collector, registry, API and reports use."""

    paramstyle = "?"

    @abc.abstractmethod
    def _execute(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """A read (SELECT or PRAGMA): its rows. Writes go through ``_transaction``."""

    @abc.abstractmethod
    def _transaction(self, statements: Iterable[tuple[str, Sequence | list[Sequence]]]) -> None:
        """Run (sql, params) or (sql, [params, ...]) pairs in one transaction."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def _q(self, sql: str) -> str:
        return sql if self.paramstyle == "?" else sql.replace("?", "%s")

    @abc.abstractmethod
    def _columns(self, table: str) -> set[str]:
        """The names of a table's columns."""

    def init_schema(self) -> None:
        self._transaction((sql, ()) for sql in SCHEMA)
        for table, column, kind in ADDED_COLUMNS:
            if column in self._columns(table):
                continue
            try:
                self._transaction([(f"ALTER TABLE {table} ADD COLUMN {column} {kind}", ())])
            except StoreError:
                if column not in self._columns(table):  # not another process's migration
                    raise

    # -- telemetry -------------------------------------------------------------------------
    def add_telemetry(self, batches: Sequence[TelemetryBatch],
                      aggregates_1s: Sequence[DriftAggregate] = (),
                      aggregates_1m: Sequence[DriftAggregate] = (),
                      gaps: Sequence[tuple[str, int, int, int, int]] = ()) -> None:
        """One transaction: batches (a batch already stored is ignored), aggregates
        (replacing the bucket) and gaps (device, boot, first missing seq, count, when)."""
        rows = [(b.device_id, b.boot, b.seq, b.received_us, b.device_us, b.cpu_pct, b.temp_dc,
                 b.free_mem, json.dumps(b.error_counts, separators=(",", ":")), len(b.drift_us),
                 pack_drift(b.drift_us)) for b in batches]
        statements: list[tuple[str, Sequence | list[Sequence]]] = []
        if rows:
            statements.append((self._insert_ignore(
                "telemetry", "device_id, boot, seq, received_us, device_us, cpu_pct, temp_dc, "
                "free_mem, errors, n_drift, drift", 11, "device_id, boot, seq"), rows))
        for table, aggs in (("drift_1s", aggregates_1s), ("drift_1m", aggregates_1m)):
            if aggs:
                statements.append((self._upsert(table), [
                    (a.device_id, a.bucket_s, a.count, a.p50_us, a.p99_us, a.max_us)
                    for a in aggs]))
        if gaps:
            statements.append((self._insert_ignore(
                "gaps", "device_id, boot, first_missing, count, noticed_us", 5,
                "device_id, boot, first_missing"), list(gaps)))
        if statements:
            self._transaction(statements)

    def _insert_ignore(self, table: str, columns: str, n: int, key: str) -> str:
        marks = ", ".join(["?"] * n)
        return self._q(f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
                       f"ON CONFLICT ({key}) DO NOTHING")

    def _upsert(self, table: str) -> str:
        return self._q(f"INSERT INTO {table} (device_id, bucket_s, count, p50_us, p99_us, max_us) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, bucket_s) DO UPDATE SET "
                       "count = excluded.count, p50_us = excluded.p50_us, "
                       "p99_us = excluded.p99_us, max_us = excluded.max_us")

    def telemetry(self, device_id: str, since_us: int = 0,
                  limit: int = 10_000) -> list[TelemetryBatch]:
        rows = self._execute(self._q(
            "SELECT device_id, seq, received_us, device_us, cpu_pct, temp_dc, free_mem, errors, "
            "drift, boot FROM telemetry WHERE device_id = ? AND received_us >= ? "
            "ORDER BY received_us, seq LIMIT ?"), (device_id, since_us, limit))
        return [TelemetryBatch(r[0], r[1], r[2], r[3], unpack_drift(r[8]), r[4], r[5], r[6],
                               {int(k): v for k, v in json.loads(r[7]).items()}, r[9])
                for r in rows]

    def samples_between(self, start_us: int, end_us: int) -> dict[str, list[int]]:
        """Drift samples per device of the batches received in [start, end)."""
        rows = self._execute(self._q(
            "SELECT device_id, drift FROM telemetry WHERE received_us >= ? AND received_us < ?"),
            (start_us, end_us))
        parts: dict[str, list[bytes]] = {}
        for device_id, blob in rows:
            parts.setdefault(device_id, []).append(bytes(blob))
        # one decode per device: numpy reads the packed int32 samples directly
        return {d: np.frombuffer(b"".join(p), dtype="<i4").tolist() for d, p in parts.items()}

    def first_received_since(self, since_us: int) -> int | None:
        """The earliest receive time at or after since_us (None: nothing stored since)."""
        rows = self._execute(self._q("SELECT MIN(received_us) FROM telemetry "
                                     "WHERE received_us >= ?"), (since_us,))
        return None if rows[0][0] is None else int(rows[0][0])

    def recent_drift(self, since_us: int) -> dict[str, list[int]]:
        """Every device's drift samples received since a time, in one query."""
        return self.samples_between(since_us, 2**62)

    def lost_by_device(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._execute(
            "SELECT device_id, SUM(count) FROM gaps GROUP BY device_id")}

    def seqs_since(self, device_id: str, boot: int, after_seq: int) -> list[int]:
        return [r[0] for r in self._execute(self._q(
            "SELECT seq FROM telemetry WHERE device_id = ? AND boot = ? AND seq > ? ORDER BY seq"),
            (device_id, boot, after_seq))]

    def boots(self, since_us: int) -> list[tuple[str, int]]:
        """(device, boot) pairs with batches received since a time."""
        return [(r[0], r[1]) for r in self._execute(self._q(
            "SELECT DISTINCT device_id, boot FROM telemetry WHERE received_us >= ?"), (since_us,))]

    def drift_samples(self, device_id: str, since_us: int = 0) -> list[tuple[int, int]]:
        """(received_us, drift_us) for every sample of a device since a time."""
        out: list[tuple[int, int]] = []
        for b in self.telemetry(device_id, since_us, limit=1_000_000):
            out.extend((b.received_us, d) for d in b.drift_us)
        return out

    def sample_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            rows = self._execute("SELECT COALESCE(SUM(n_drift), 0) FROM telemetry")
        else:
            rows = self._execute(self._q("SELECT COALESCE(SUM(n_drift), 0) FROM telemetry "
                                         "WHERE device_id = ?"), (device_id,))
        return int(rows[0][0])

    def batch_seqs(self, device_id: str) -> list[int]:
        return [r[0] for r in self._execute(self._q(
            "SELECT seq FROM telemetry WHERE device_id = ? ORDER BY boot, seq"), (device_id,))]

    def aggregates(self, device_id: str, resolution: str = "1s",
                   since_s: int = 0) -> list[DriftAggregate]:
        table = {"1s": "drift_1s", "1m": "drift_1m"}[resolution]
        rows = self._execute(self._q(
            f"SELECT device_id, bucket_s, count, p50_us, p99_us, max_us FROM {table} "
            "WHERE device_id = ? AND bucket_s >= ? ORDER BY bucket_s"), (device_id, since_s))
        return [DriftAggregate(*r) for r in rows]

    def reachable(self) -> None:
        """A cheap read of a table (for /health): StoreError when the database cannot be
        read."""
        self._execute("SELECT 1 FROM devices LIMIT 1")

    def lost(self, device_id: str) -> int:
        rows = self._execute(self._q("SELECT COALESCE(SUM(count), 0) FROM gaps "
                                     "WHERE device_id = ?"), (device_id,))
        return int(rows[0][0])

    def prune(self, raw_before_us: int, seconds_before_s: int) -> None:
        """Retention: drop raw batches and 1 s aggregates older than the limits."""
        self._transaction([
            (self._q("DELETE FROM telemetry WHERE received_us < ?"), (raw_before_us,)),
            (self._q("DELETE FROM drift_1s WHERE bucket_s < ?"), (seconds_before_s,)),
        ])

    # -- devices ---------------------------------------------------------------------------
    def upsert_device(self, d: DeviceRecord) -> None:
        self._transaction([(self._q(
            f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET "
            "state = excluded.state, fw_version = excluded.fw_version, "
            "active_track = excluded.active_track, bundle_version = excluded.bundle_version, "
            "last_seen_us = excluded.last_seen_us, online = excluded.online, "
            "light_offset_us = excluded.light_offset_us, "
            "reported_light_offset_us = excluded.reported_light_offset_us"),
            (d.id, d.state, d.fw_version, d.active_track, d.bundle_version, d.last_seen_us,
             int(d.online), d.light_offset_us, d.reported_light_offset_us))])

    def devices(self) -> list[DeviceRecord]:
        rows = self._execute(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY id")
        return [_device_record(r) for r in rows]

    def device(self, device_id: str) -> DeviceRecord | None:
        rows = self._execute(self._q(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?"),
                             (device_id,))
        return _device_record(rows[0]) if rows else None

    # -- bundles and deployments -----------------------------------------------------------
    def add_bundle(self, sha256: str, track_id: str, version: int, size: int, path: str) -> None:
        self._transaction([(self._insert_ignore(
            "bundles", "sha256, track_id, bundle_version, size, path, added_us", 6, "sha256"),
            (sha256, track_id, version, size, path, time.time_ns() // 1000))])

    def bundles(self) -> list[dict]:
        rows = self._execute("SELECT sha256, track_id, bundle_version, size, path, added_us "
                             "FROM bundles ORDER BY added_us")
        return [dict(zip(("sha256", "track_id", "bundle_version", "size", "path", "added_us"),
                         r, strict=True)) for r in rows]

    def bundle(self, sha256: str) -> dict | None:
        found = [b for b in self.bundles() if b["sha256"] == sha256]
        return found[0] if found else None

    def save_deployment(self, dep_id: str, bundle_sha256: str, state: str, detail: dict) -> None:
        now = time.time_ns() // 1000
        self._transaction([(self._q(
            "INSERT INTO deployments (id, bundle_sha256, state, created_us, updated_us, detail) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "updated_us = excluded.updated_us, detail = excluded.detail"),
            (dep_id, bundle_sha256, state, now, now, json.dumps(detail)))])

    def deployments(self) -> list[dict]:
        rows = self._execute("SELECT id, bundle_sha256, state, created_us, updated_us, detail "
                             "FROM deployments ORDER BY created_us")
        return [{"id": r[0], "bundle_sha256": r[1], "state": r[2], "created_us": r[3],
                 "updated_us": r[4], **json.loads(r[5])} for r in rows]


def _device_record(row: Sequence) -> DeviceRecord:
    return DeviceRecord(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]),
                        None if row[7] is None else int(row[7]),
                        None if row[8] is None else int(row[8]))


class SqliteStore(Store):
    """SQLite in WAL mode: one writer connection (behind a lock, for the collector, the
    registry and the rollup) and a read connection per reading thread, so readers (the
    API's thread pool, the rollup) never wait for a write transaction nor for each other."""

    def __init__(self, path: str, timeout_s: float = 5.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            self.conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False,
                                        isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a power cut may lose the last transactions, never corrupt.
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open the SQLite database ({exc})") from exc
        self._lock = threading.Lock()
        # An in-memory database is private to its connection: its reads share the writer.
        self._shared_reads = path == ":memory:" or path.startswith("file::memory:")
        self._local = threading.local()
        self._readers: dict[threading.Thread, sqlite3.Connection] = {}
        self._readers_lock = threading.Lock()
        self.init_schema()

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (opened on its first read; those of threads that
        have ended are closed then, so short-lived threads leave none open)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA query_only=1")
            with self._readers_lock:
                for thread in [t for t in self._readers if not t.is_alive()]:
                    self._readers.pop(thread).close()
                self._readers[threading.current_thread()] = conn
            self._local.conn = conn
        return conn

    def _execute(self, sql: str, params: Sequence = ()) -> list[tuple]:
        try:
            if self._shared_reads:
                with self._lock:
                    return self.conn.execute(sql, params).fetchall()
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _transaction(self, statements: Iterable[tuple[str, Sequence | list[Sequence]]]) -> None:
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    if isinstance(params, list):
                        self.conn.executemany(sql, params)
                    else:
                        self.conn.execute(sql, params)
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: write failed, nothing stored ({exc}); "
                                 "check free disk space and that no other program holds "
                                 "a write lock") from exc

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self._execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers.values():
                conn.close()
            self._readers.clear()
        with self._lock:
            self.conn.close()


class PostgresStore(Store):
    """PostgreSQL through psycopg 3, for fleets and several collectors."""

    paramstyle = "%s"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from exc
        self.url = url
        self._psycopg = psycopg
        try:
            self.conn = psycopg.connect(url, autocommit=False, connect_timeout=5)
        except psycopg.Error as exc:
            raise StoreError(f"{_redact(url)}: cannot connect ({exc})") from exc
        self._lock = threading.Lock()
        self.init_schema()

    def _execute(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql, params)
                    rows = cur.fetchall() if cur.description else []
                self.conn.commit()
                return [tuple(r) for r in rows]
            except self._psycopg.Error as exc:
                self.conn.rollback()
                raise StoreError(f"{_redact(self.url)}: {exc}") from exc

    def _transaction(self, statements: Iterable[tuple[str, Sequence | list[Sequence]]]) -> None:
        with self._lock:
            try:
                with self.conn.cursor() as cur:
                    for sql, params in statements:
                        if isinstance(params, list):
                            cur.executemany(sql, params)
                        else:
                            cur.execute(sql, params)
                self.conn.commit()
            except self._psycopg.Error as exc:
                self.conn.rollback()
                raise StoreError(f"{_redact(self.url)}: write failed, nothing stored "
                                 f"({exc})") from exc

    def _columns(self, table: str) -> set[str]:
        return {r[0] for r in self._execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND table_schema = current_schema()", (table,))}

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def open_store(url: str) -> Store:
    """``sqlite://PATH`` (PATH as written: ``sqlite://agent.db`` is relative,
    ``sqlite:///var/lib/gridcast/agent.db`` absolute), a plain path, or
    ``postgresql://user:pw@host/db``."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    if url.startswith("sqlite://"):
        return SqliteStore(url[len("sqlite://"):] or "gridcast-agent.db")
    if "://" in url:
        raise StoreError(f"database {url!r}: expected sqlite://PATH or postgresql://...")
    return SqliteStore(url)
