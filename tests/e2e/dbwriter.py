"""An engine-neutral writer for the failover tests and benchmarks/failover.py.

It inserts numbered rows into whichever DB host accepts writes, as an application would
(a read-only or dead node makes it try the next one), and records every acknowledged
commit: (row id, time acknowledged, address). An engine plugs in through a small client
class (CLIENTS); the MySQL family adds its own beside PostgresClient.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time


class PostgresClient:
    port = 5432

    def __init__(self, user: str, password: str, database: str):
        self.user, self.password, self.database = user, password, database

    def __repr__(self) -> str:  # test reports print fixtures: never the password
        return f"PostgresClient({self.user}@{self.database})"

    def connect(self, address: str):
        import psycopg

        # tcp_user_timeout: a commit sent to a host that died or was cut off fails in about
        # a second instead of hanging on TCP retransmissions. No statement_timeout: a
        # cancelled wait for a synchronous standby is reported as a commit.
        return psycopg.connect(
            host=address,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database,
            connect_timeout=2,
            autocommit=True,
            tcp_user_timeout=1000,
            keepalives=1,
            keepalives_idle=1,
            keepalives_interval=1,
            keepalives_count=2,
        )

    def writable(self, conn) -> bool:
        return conn.execute(
            "select not pg_is_in_recovery() and current_setting('default_transaction_read_only') = 'off'"
        ).fetchone()[0]

    def create(self, conn, table: str) -> None:
        conn.execute(f"create table if not exists {table} (id bigint primary key, at timestamptz default now())")

    def insert(self, conn, table: str, i: int) -> None:
        conn.execute(f"insert into {table} (id) values (%s)", (i,))

    def ids(self, conn, table: str) -> set[int]:
        return {r[0] for r in conn.execute(f"select id from {table}")}


CLIENTS = {"postgresql": PostgresClient}


def _port_open(address: str, port: int, timeout: float = 0.3) -> bool:
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class Writer(threading.Thread):
    def __init__(self, client, addresses: list[str], interval: float = 0.01):
        super().__init__(daemon=True)
        self.client, self.addresses, self.interval = client, list(addresses), interval
        self.table = "mmdeploy_writer_" + secrets.token_hex(4)
        self.acked: list[tuple[int, float, str]] = []
        self.failures = 0
        self._stop_event = threading.Event()
        self._preferred = self.addresses[0]

    def primary(self):
        """A connection to a node that accepts writes, or (None, None)."""
        order = [self._preferred] + [a for a in self.addresses if a != self._preferred]
        for address in order:
            if not _port_open(address, self.client.port):
                continue
            try:
                conn = self.client.connect(address)
            except Exception:
                continue
            try:
                if self.client.writable(conn):
                    self._preferred = address
                    return conn, address
            except Exception:
                pass
            conn.close()
        return None, None

    def start(self) -> None:
        conn, _ = self.primary()
        if conn is None:
            raise RuntimeError(f"no writable node among {self.addresses}")
        self.client.create(conn, self.table)
        conn.close()
        super().start()

    def run(self) -> None:
        conn, address, i = None, None, 0
        while not self._stop_event.is_set():
            if conn is None:
                conn, address = self.primary()
                if conn is None:
                    time.sleep(0.05)
                    continue
            i += 1  # a failed insert's id is never reused: it may have committed
            try:
                self.client.insert(conn, self.table, i)
                self.acked.append((i, time.monotonic(), address))
            except Exception:
                self.failures += 1
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            time.sleep(self.interval)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)

    def acked_ids(self) -> set[int]:
        return {i for i, _, _ in self.acked}

    def rows_on(self, address: str) -> set[int]:
        conn = self.client.connect(address)
        try:
            return self.client.ids(conn, self.table)
        finally:
            conn.close()

    def gap(self, since: float) -> tuple[float, float, float]:
        """Write unavailability of an event that began at monotonic time `since`: the
        longest pause between two consecutive acknowledged writes from the last one before
        `since` on, as (last ack before the pause, first ack after it, seconds between),
        the times relative to `since`."""
        times = [t for _, t, _ in self.acked]
        start = max([i for i, t in enumerate(times) if t < since], default=0)
        pairs = list(zip(times[start:], times[start + 1 :]))
        if not pairs:
            return float("nan"), float("nan"), float("nan")
        last, first = max(pairs, key=lambda p: p[1] - p[0])
        return last - since, first - since, first - last

    def count_since(self, since: float) -> int:
        return sum(1 for _, t, _ in self.acked if t >= since)
