"""SESSION windows: views grouped by session (per user, and over all rows) stay equal to
PostgreSQL's gaps-and-islands recompute of the same rows while rows arrive, leave and move
(merging and splitting sessions), and after kill -9; ad-hoc queries agree too."""
import datetime
import random

from conftest import Freshet

BASE = datetime.datetime(2026, 1, 1)

OURS = {
    "per_user": "SELECT uid, window_start, window_end, count(*) AS n, max(ts) AS last "
                "FROM SESSION(visits, ts, INTERVAL '5 minutes') AS v GROUP BY v.uid, window_start, window_end",
    "overall": "SELECT window_start, window_end, count(*) AS n "
               "FROM SESSION(visits, ts, INTERVAL '10 minutes') GROUP BY 1, 2",
}


def oracle(gap, by_user):
    part = "PARTITION BY uid " if by_user else ""
    key = "uid, " if by_user else ""
    cols = "count(*), max(ts)" if by_user else "count(*)"
    return f"""
        WITH o AS (SELECT uid, ts, CASE WHEN ts - lag(ts) OVER ({part}ORDER BY ts) <= interval '{gap}'
                                   THEN 0 ELSE 1 END AS brk FROM sw_visits),
             s AS (SELECT *, sum(brk) OVER ({part}ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM o)
        SELECT {key}min(ts), max(ts) + interval '{gap}', {cols} FROM s GROUP BY {key}sid"""


ORACLE = {"per_user": oracle("5 minutes", True), "overall": oracle("10 minutes", False)}


def check(conn, pg, what):
    for name, sql in OURS.items():
        expected = sorted(tuple(r) for r in pg.execute(ORACLE[name]))
        assert sorted(conn.execute(f"SELECT * FROM {name}").fetchall()) == expected, (what, name)
        assert sorted(conn.execute(sql).fetchall()) == expected, (what, name, "ad hoc")


def test_session_windows_merge_and_split(tmp_path, postgres):
    rng = random.Random(11)
    pg = postgres.connect()
    pg.execute("CREATE TABLE sw_visits (id INT PRIMARY KEY, uid INT, ts TIMESTAMP)")
    server = Freshet(tmp_path).start()
    try:
        conn = server.connect()
        conn.execute("CREATE TABLE visits (id INT PRIMARY KEY, uid INT, ts TIMESTAMP)")
        next_id = [1]

        def when():
            return BASE + datetime.timedelta(seconds=rng.randint(0, 3 * 3600))

        def both(sql, rows):
            for c, table in ((conn, "visits"), (pg, "sw_visits")):
                with c.cursor() as cur:
                    cur.executemany(sql.format(t=table), rows)

        def add(n):
            rows = [(next_id[0] + i, rng.randint(1, 8), when()) for i in range(n)]
            next_id[0] += n
            both("INSERT INTO {t} VALUES (%s, %s, %s)", rows)

        add(200)
        conn.execute(f"CREATE MATERIALIZED VIEW per_user AS {OURS['per_user']}")
        add(100)
        conn.execute(f"CREATE MATERIALIZED VIEW overall AS {OURS['overall']}")
        check(conn, pg, "after backfill")
        for round in range(4):
            add(40)
            ids = [r[0] for r in pg.execute("SELECT id FROM sw_visits")]
            both("DELETE FROM {t} WHERE id = %s", [(i,) for i in rng.sample(ids, 15)])
            ids = [r[0] for r in pg.execute("SELECT id FROM sw_visits")]
            both("UPDATE {t} SET ts = %s WHERE id = %s", [(when(), i) for i in rng.sample(ids, 15)])
            check(conn, pg, f"round {round}")
        server.kill9()
        server.start()
        conn = server.connect()
        check(conn, pg, "after kill -9")
        add(30)
        check(conn, pg, "after the restart")
    finally:
        server.stop()
        pg.execute("DROP TABLE sw_visits")


def test_sessions_close_on_the_watermark(kafka, tmp_path, postgres):
    """Over a source with a watermark a session's end is bounded by it: the aggregate drops
    closed sessions' groups, and EMIT ON WINDOW CLOSE emits each session once, when the
    watermark passes its end — equal to PostgreSQL's sessions that end below the watermark."""
    import json

    from test_kafka import send

    rng = random.Random(5)
    kafka.create_topic("taps", 1)
    producer = kafka.producer()
    pg = postgres.connect()
    pg.execute("CREATE TABLE sw_visits (id INT PRIMARY KEY, uid INT, ts TIMESTAMP)")
    server = Freshet(tmp_path).start()
    try:
        conn = server.connect()
        conn.execute(f"""CREATE SOURCE taps (id INT, uid INT, ts TIMESTAMP,
                             WATERMARK FOR ts AS ts - INTERVAL '1 minute')
                         WITH (connector = 'kafka', topic = 'taps',
                               properties.bootstrap.server = '{kafka.bootstrap}',
                               watermark.idle_timeout = '0')
                         FORMAT PLAIN ENCODE JSON""")
        closed = ("SELECT uid, window_start, window_end, count(*) AS n, max(ts) AS last "
                  "FROM SESSION(taps, ts, INTERVAL '5 minutes') GROUP BY uid, window_start, window_end")
        conn.execute(f"CREATE MATERIALIZED VIEW closed_sessions AS {closed} EMIT ON WINDOW CLOSE")
        sent = []
        t = 0
        for round in range(3):
            rows = []
            for _ in range(150):
                t += rng.randint(1, 40)
                rows.append((len(sent) + len(rows) + 1, rng.randint(1, 6), BASE + datetime.timedelta(seconds=t)))
            send(producer, "taps", [(0, json.dumps({"id": i, "uid": u, "ts": ts.isoformat(sep=" ")}).encode(), None)
                                    for i, u, ts in rows])
            sent += rows
            with pg.cursor() as cur:
                cur.executemany("INSERT INTO sw_visits VALUES (%s, %s, %s)", rows)
            conn.execute("FLUSH")
            w = conn.execute("SELECT DISTINCT watermark FROM freshet_internal.source_watermarks "
                             "WHERE source = 'taps'").fetchone()[0].replace(tzinfo=None)
            expected = sorted(tuple(r) for r in pg.execute(
                f"SELECT * FROM ({ORACLE['per_user']}) AS s (uid, ws, we, n, last) WHERE we < %s", (w,)))
            ours = sorted(conn.execute("SELECT * FROM closed_sessions").fetchall())
            assert ours == expected, f"round {round} at watermark {w}"
            assert ours, round
    finally:
        server.stop()
        pg.execute("DROP TABLE sw_visits")
