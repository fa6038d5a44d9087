"""Temporal filters: views with now() in WHERE, whose rows enter and leave as time passes
(scheduled changes, applied by epochs of passing time even when nothing is written), equal to
PostgreSQL's recompute of the same query at the same time, across kill -9; their state holds
only the changes still to come."""
import datetime
import random

import psycopg
import pytest

from conftest import Freshet, wait_for

VIEWS = {
    "recent": "SELECT id, v FROM {ev} WHERE ts > now() - interval '1 hour'",
    "started": "SELECT id FROM {ev} WHERE ts <= now()",
    "last_hour": "SELECT count(*) AS n, sum(v) AS total FROM {ev} "
                 "WHERE ts BETWEEN now() - interval '1 hour' AND now()",
    "per_group": "SELECT v % 3 AS g, count(*) AS n FROM {ev} "
                 "WHERE now() < ts + interval '10 minutes' AND v > 10 GROUP BY v % 3",
    "joined": "SELECT e.id, k.name FROM {ev} e JOIN {kinds} k ON k.id = e.v % 3 "
              "WHERE e.ts >= now() - interval '30 minutes'",
}
# The times (seconds from the row's ts) at which some view's comparison changes for the row.
EDGES = (0, 600, 1800, 3600)
SEC = datetime.timedelta(seconds=1)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def far_rows(now, n, first_id, rng):
    """Rows whose every edge is more than two minutes from `now`: none changes during the test."""
    rows = []
    while len(rows) < n:
        d = rng.randint(-3 * 3600, 3 * 3600)
        if all(abs(d + e) > 120 for e in EDGES):
            rows.append((first_id + len(rows), now + d * SEC, rng.randint(0, 40)))
    return rows


def same_as_postgres(conn, pg, names):
    """Whether every view in `names` equals PostgreSQL's recompute of its query now."""
    for name in names:
        ours = sorted(conn.execute(f"SELECT * FROM {name}").fetchall())
        theirs = sorted(tuple(r) for r in pg.execute(VIEWS[name].format(ev="tf_ev", kinds="tf_kinds")))
        if ours != theirs:
            return False
    return True


def state_entries(conn):
    return dict(conn.execute("SELECT view, operator_entries FROM freshet_internal.view_state").fetchall())


def insert(conn, pg, rows):
    for c, table in ((conn, "ev"), (pg, "tf_ev")):
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", rows)


def test_temporal_filters_follow_the_clock(tmp_path, postgres):
    rng = random.Random(7)
    pg = postgres.connect()
    pg.execute("SET TimeZone = 'UTC'")
    pg.execute("CREATE TABLE tf_ev (id INT PRIMARY KEY, ts TIMESTAMP, v INT)")
    pg.execute("CREATE TABLE tf_kinds (id INT PRIMARY KEY, name TEXT)")
    pg.execute("INSERT INTO tf_kinds VALUES (0, 'zero'), (1, 'one'), (2, 'two')")
    server = Freshet(tmp_path).start()
    try:
        conn = server.connect()
        conn.execute("CREATE TABLE ev (id INT PRIMARY KEY, ts TIMESTAMP, v INT)")
        conn.execute("CREATE TABLE kinds (id INT PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO kinds VALUES (0, 'zero'), (1, 'one'), (2, 'two')")
        now = utcnow()
        # Half the rows before the views (their backfill), half after (maintained).
        insert(conn, pg, far_rows(now, 150, 1, rng))
        for name in ("recent", "last_hour", "joined"):
            conn.execute(f"CREATE MATERIALIZED VIEW {name} AS "
                         + VIEWS[name].format(ev="ev", kinds="kinds"))
        insert(conn, pg, far_rows(now, 150, 151, rng))
        for name in ("started", "per_group"):
            conn.execute(f"CREATE MATERIALIZED VIEW {name} AS "
                         + VIEWS[name].format(ev="ev", kinds="kinds"))
        conn.execute("DELETE FROM ev WHERE id % 7 = 0")
        pg.execute("DELETE FROM tf_ev WHERE id % 7 = 0")
        conn.execute("UPDATE ev SET ts = ts + interval '2 hours' WHERE id % 5 = 0")
        pg.execute("UPDATE tf_ev SET ts = ts + interval '2 hours' WHERE id % 5 = 0")
        wait_for(lambda: same_as_postgres(conn, pg, VIEWS), timeout=30, what="views equal to PostgreSQL")
        before = state_entries(conn)

        # Rows whose edges come within seconds, then nothing is written: the view changes by
        # itself, and a subscriber sees the row arrive and leave.
        sub = server.connect()
        with sub.transaction():
            sub.execute("DECLARE c CURSOR FOR SUBSCRIBE recent WITH (SNAPSHOT = false)")
            soon = utcnow()
            insert(conn, pg, [(1001, soon - 3600 * SEC + 6 * SEC, 11), (1002, soon + 6 * SEC, 12)])
            seen = []
            while not any(r[1] == -1 for r in seen):
                got = sub.execute("FETCH ALL c WITH (timeout = '30s')").fetchall()
                assert got, f"no change within 30 s; so far {seen}"
                seen += got
            assert [(r[1], r[2]) for r in seen if r[2] == 1001] == [(1, 1001), (-1, 1001)], seen
            assert utcnow() >= soon + 6 * SEC, "the row left before its time"
        wait_for(lambda: conn.execute("SELECT count(*) FROM started WHERE id = 1002").fetchone()[0] == 1,
                 timeout=30, what="the future row entering")
        wait_for(lambda: same_as_postgres(conn, pg, VIEWS), timeout=30, what="views equal to PostgreSQL")
        # What has happened leaves nothing behind: of the two rows, only 1002's departure from
        # `recent` an hour from now is still to come.
        after = state_entries(conn)
        assert after["recent"] == before["recent"] + 1 and after["started"] == before["started"], (before, after)

        # A departure and an arrival scheduled before kill -9 happen after the restart.
        soon = utcnow()
        insert(conn, pg, [(2001, soon - 3600 * SEC + 8 * SEC, 21), (2002, soon + 8 * SEC, 22)])
        assert conn.execute("SELECT count(*) FROM recent WHERE id = 2001").fetchone()[0] == 1
        server.kill9()
        server.start()
        conn = server.connect()
        wait_for(lambda: conn.execute("SELECT count(*) FROM recent WHERE id = 2001").fetchone()[0] == 0,
                 timeout=60, what="the row leaving after the restart")
        wait_for(lambda: conn.execute("SELECT count(*) FROM started WHERE id = 2002").fetchone()[0] == 1,
                 timeout=30, what="the future row entering after the restart")
        assert utcnow() >= soon + 8 * SEC
        wait_for(lambda: same_as_postgres(conn, pg, VIEWS), timeout=30, what="views equal to PostgreSQL")
        after = state_entries(conn)
        assert after["recent"] == before["recent"] + 2 and after["started"] == before["started"], (before, after)

        # now() anywhere else is refused, naming the construct.
        for sql in ["SELECT id, now() FROM ev",
                    "SELECT id FROM ev WHERE ts::date = now()::date",
                    "SELECT id FROM ev WHERE ts = now()",
                    "SELECT id FROM ev WHERE ts > now() - v * interval '1 second'",
                    "SELECT id FROM ev WHERE ts > now() OR v > 3"]:
            with pytest.raises(psycopg.Error) as e:
                conn.execute(f"CREATE MATERIALIZED VIEW bad AS {sql}")
            assert e.value.sqlstate == "0A000", (sql, e.value.sqlstate, str(e.value))
            assert "now()" in str(e.value), (sql, str(e.value))
    finally:
        server.stop()
        pg.execute("DROP TABLE tf_ev, tf_kinds")
