"""Interval joins and joins on a window over sources with watermarks: results equal to
PostgreSQL's recompute, and the join's state deleted as the watermarks pass, so it stays that
of the rows that can still match while ten times more time passes (and across kill -9)."""
import datetime
import json
import random

from conftest import Freshet
from test_kafka import send

EPOCH = datetime.datetime(2026, 1, 1)


def ddl(name, bootstrap):
    return f"""
        CREATE SOURCE {name} (id BIGINT, ad BIGINT, ts TIMESTAMP,
                              WATERMARK FOR ts AS ts - INTERVAL '2 seconds')
        WITH (connector = 'kafka', topic = '{name}', properties.bootstrap.server = '{bootstrap}',
              watermark.idle_timeout = '0')
        FORMAT PLAIN ENCODE JSON"""


VIEWS = {
    # A click counts for the impressions of its ad in the 10 s before it.
    "attributed": ("SELECT c.id AS click, i.id AS imp, c.ad FROM clicks c JOIN imps i "
                   "ON c.ad = i.ad AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '10 seconds'",
                   "SELECT c.id, i.id, c.ad FROM clicks c JOIN imps i "
                   "ON c.ad = i.ad AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '10 seconds'"),
    # Impressions and clicks of an ad in the same 5-second window.
    "same_window": ("SELECT i.id AS imp, c.id AS click, i.window_start FROM "
                    "TUMBLE(imps, ts, INTERVAL '5 seconds') i JOIN TUMBLE(clicks, ts, INTERVAL '5 seconds') c "
                    "ON i.window_start = c.window_start AND i.ad = c.ad",
                    "SELECT i.id, c.id, date_bin('5 seconds', i.ts, '1970-01-01') FROM imps i JOIN clicks c "
                    "ON date_bin('5 seconds', i.ts, '1970-01-01') = date_bin('5 seconds', c.ts, '1970-01-01') "
                    "AND i.ad = c.ad"),
}


def state_entries(conn):
    return dict(conn.execute("SELECT view, operator_entries FROM freshet_internal.view_state").fetchall())


def test_interval_joins_forget_what_cannot_match(kafka, tmp_path, postgres):
    rng = random.Random(3)
    producer = kafka.producer()
    pg = postgres.connect()
    for t in ("imps", "clicks"):
        kafka.create_topic(t, 1)
        pg.execute(f"CREATE TABLE {t} (id BIGINT, ad BIGINT, ts TIMESTAMP)")
    server = Freshet(tmp_path).start()
    try:
        conn = server.connect()
        for t in ("imps", "clicks"):
            conn.execute(ddl(t, kafka.bootstrap))
        for name, (q, _) in VIEWS.items():
            conn.execute(f"CREATE MATERIALIZED VIEW {name} AS {q}")
        next_id = [1]

        def produce(start, seconds, per_second):
            """Events from `start` for `seconds`, in time order (nothing late), both topics."""
            for topic in ("imps", "clicks"):
                rows = []
                for k in range(seconds * per_second):
                    t = start + k / per_second + rng.random() / per_second
                    rows.append((next_id[0], rng.randint(1, 20), EPOCH + datetime.timedelta(seconds=t)))
                    next_id[0] += 1
                send(producer, topic, [(0, json.dumps({"id": i, "ad": a, "ts": ts.isoformat(sep=" ")}).encode(),
                                        None) for i, a, ts in rows])
                with pg.cursor() as cur:
                    cur.executemany(f"INSERT INTO {topic} VALUES (%s, %s, %s)", rows)
            conn.execute("FLUSH")

        def check():
            for name, (_, oracle) in VIEWS.items():
                ours = sorted(conn.execute(f"SELECT * FROM {name}").fetchall())
                theirs = sorted(tuple(r) for r in pg.execute(oracle).fetchall())
                assert ours == theirs, f"{name} differs from PostgreSQL"
                assert theirs, name

        produce(0, 30, 10)
        check()
        entries1 = state_entries(conn)
        produce(30, 30, 10)
        server.kill9()
        server.start()
        conn = server.connect()
        check()
        # Ten times more time passes: each join keeps only the rows that can still match.
        produce(60, 300, 10)
        check()
        entries3 = state_entries(conn)
        for name in VIEWS:
            assert entries3[name] <= 2 * entries1[name], (name, entries1, entries3)
        assert conn.execute("SELECT count(*) FROM attributed").fetchone()[0] > 1000
    finally:
        server.stop()
        pg.execute("DROP TABLE imps, clicks")
