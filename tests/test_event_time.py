"""Event time: sources with WATERMARK FOR, late rows kept out of views and recorded, TUMBLE and
HOP windows in views (PostgreSQL computes the same windows from scratch as the oracle), the
watermark across kill -9, and idle partitions."""
import datetime
import json

import psycopg

from conftest import Freshet, wait_for
from test_kafka import send

EPOCH = datetime.datetime(2026, 1, 1)
SEC = datetime.timedelta(seconds=1)


def bids_ddl(name, topic, bootstrap, idle="0"):
    return f"""
        CREATE SOURCE {name} (id BIGINT, price BIGINT, ts TIMESTAMP,
                              WATERMARK FOR ts AS ts - INTERVAL '5 seconds')
        INCLUDE partition AS kp, offset AS ko
        WITH (connector = 'kafka', topic = '{topic}',
              properties.bootstrap.server = '{bootstrap}', watermark.idle_timeout = '{idle}')
        FORMAT PLAIN ENCODE JSON"""


def bid(i, t):
    """Bid `i` at `t` seconds past EPOCH (fractions allowed)."""
    ts = EPOCH + datetime.timedelta(seconds=t)
    return {"id": i, "price": (i * 37) % 101, "ts": ts.isoformat(sep=" ")}


VIEWS = {
    "tumbling": ("SELECT window_start, window_end, count(*) AS n, sum(price) AS total "
                 "FROM TUMBLE(bids, ts, INTERVAL '10 seconds') GROUP BY window_start, window_end",
                 "SELECT date_bin('10 seconds', ts, '1970-01-01') AS ws, "
                 "date_bin('10 seconds', ts, '1970-01-01') + interval '10 seconds', count(*), sum(price) "
                 "FROM bids GROUP BY 1"),
    "hopping": ("SELECT window_start, max(price) AS hi, count(*) AS n "
                "FROM HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds') AS h GROUP BY window_start",
                "SELECT date_bin('2 seconds', ts, '1970-01-01') - i * interval '2 seconds', max(price), count(*) "
                "FROM bids, generate_series(0, 4) AS i GROUP BY 1"),
    "windowed_rows": ("SELECT id, window_start, window_end FROM TUMBLE(bids, ts, INTERVAL '1 minute') "
                      "WHERE price > 50",
                      "SELECT id, date_bin('1 minute', ts, '1970-01-01'), "
                      "date_bin('1 minute', ts, '1970-01-01') + interval '1 minute' FROM bids WHERE price > 50"),
}


def check_views(conn, pg, names):
    for name in names:
        ours = sorted(conn.execute(f"SELECT * FROM {name}").fetchall())
        theirs = sorted(tuple(r) for r in pg.execute(VIEWS[name][1]).fetchall())
        assert ours == theirs, f"view {name} differs from PostgreSQL"


def test_watermark_late_rows_windows_and_restart(kafka, tmp_path, postgres):
    kafka.create_topic("bids", 2)
    producer = kafka.producer()
    server = Freshet(tmp_path).start()
    pg = postgres.connect()
    pg.execute("CREATE TABLE bids (id BIGINT, price BIGINT, ts TIMESTAMP)")
    try:
        conn = server.connect()
        conn.autocommit = True
        conn.execute(bids_ddl("bids", "bids", kafka.bootstrap))
        for name in ("tumbling", "hopping"):
            conn.execute(f"CREATE MATERIALIZED VIEW {name} AS {VIEWS[name][0]}")

        on_time, late = [], []

        def produce(items):
            """(partition, bid, is_late) in order; returns nothing, records the expectation."""
            where = send(producer, "bids", [(p, json.dumps(b).encode(), None) for p, b, _ in items])
            for (p, b, is_late), (wp, off) in zip(items, where):
                (late if is_late else on_time).append((b, wp, off))

        # Phase 1: each partition in time order (nothing can be late), 0 … 100 s.
        phase1 = [(i % 2, bid(i, i * 0.25), False) for i in range(400)]
        produce(phase1)
        conn.execute("FLUSH")
        # The watermark: the smaller partition maximum, less 5 s.
        w1 = EPOCH + datetime.timedelta(seconds=398 * 0.25 - 5)
        marks = conn.execute("SELECT partition, max_event_time, idle, watermark FROM "
                             "freshet_internal.source_watermarks ORDER BY partition").fetchall()
        assert [m[0] for m in marks] == [0, 1] and not any(m[2] for m in marks), marks
        assert marks[0][3].replace(tzinfo=None) == w1, marks

        # Phase 2: rows far below the watermark (late whatever the batching), and rows ahead of
        # every watermark the phase can reach (never late), interleaved.
        phase2 = []
        for i in range(400, 700):
            if i % 3 == 0:
                phase2.append((i % 2, bid(i, 20 + (i % 50)), True))   # < w1 - 20 s
            else:
                phase2.append((i % 2, bid(i, 120 + (i - 400) * 0.01), False))
        produce(phase2)
        conn.execute("FLUSH")

        def oracle():
            pg.execute("TRUNCATE bids")
            with pg.cursor().copy("COPY bids (id, price, ts) FROM STDIN") as cp:
                for b, _, _ in on_time:
                    cp.write_row((b["id"], b["price"], b["ts"]))

        oracle()
        check_views(conn, pg, ["tumbling", "hopping"])
        # Every row is accounted for: in the source, or recorded as late.
        assert conn.execute("SELECT count(*) FROM bids").fetchone() == (len(on_time),)
        recorded = conn.execute("SELECT partition, \"offset\", event_time, watermark "
                                "FROM freshet_internal.late_rows").fetchall()
        assert sorted((p, o) for p, o, _, _ in recorded) == sorted((p, o) for _, p, o in late)
        assert all(t < w for _, _, t, w in recorded), recorded
        # A view created now re-reads the topic and skips exactly the late rows.
        conn.execute(f"CREATE MATERIALIZED VIEW windowed_rows AS {VIEWS['windowed_rows'][0]}")
        check_views(conn, pg, ["tumbling", "hopping", "windowed_rows"])
        before = conn.execute("SELECT watermark FROM freshet_internal.source_watermarks").fetchall()

        # kill -9: the watermark, the late rows and the windows survive; a row below the
        # watermark is still late afterwards, a row above it is not.
        server.kill9()
        server.start()
        conn = server.connect()
        conn.autocommit = True
        assert conn.execute("SELECT watermark FROM freshet_internal.source_watermarks").fetchall() == before
        produce([(0, bid(900, 30), True), (1, bid(901, 200), False), (0, bid(902, 201), False)])
        conn.execute("FLUSH")
        oracle()
        check_views(conn, pg, ["tumbling", "hopping", "windowed_rows"])
        assert conn.execute("SELECT count(*) FROM freshet_internal.late_rows").fetchone() == (len(late),)
        assert conn.execute("SELECT count(*) FROM bids").fetchone() == (len(on_time),)
    finally:
        server.stop()


def test_watermark_statement_errors_and_idle_partitions(kafka, freshet):
    kafka.create_topic("quiet", 2)
    conn = freshet.connect()
    conn.autocommit = True
    bad = [
        ("CREATE SOURCE e1 (ts TIMESTAMP, WATERMARK FOR nope AS nope) WITH (connector='kafka', "
         f"topic='quiet', properties.bootstrap.server='{kafka.bootstrap}') FORMAT JSON", "42703"),
        ("CREATE SOURCE e2 (ts BIGINT, WATERMARK FOR ts AS ts) WITH (connector='kafka', "
         f"topic='quiet', properties.bootstrap.server='{kafka.bootstrap}') FORMAT JSON", "42804"),
        ("CREATE SOURCE e3 (ts TIMESTAMP, WATERMARK FOR ts AS ts + INTERVAL '1 second') WITH "
         f"(connector='kafka', topic='quiet', properties.bootstrap.server='{kafka.bootstrap}') FORMAT JSON",
         "0A000"),
        ("CREATE SOURCE e4 (ts TIMESTAMP, WATERMARK FOR ts AS ts) WITH (connector='kafka', "
         f"topic='quiet', properties.bootstrap.server='{kafka.bootstrap}', watermark.idle_timeout='soon') "
         "FORMAT JSON", "22023"),
        ("SELECT * FROM HOP(nothing, ts, INTERVAL '3 seconds', INTERVAL '10 seconds')", "0A000"),
        ("SELECT * FROM TUMBLE(nothing, ts)", "42883"),
    ]
    for sql, state in bad:
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            assert e.sqlstate == state, (sql, e.sqlstate, str(e))
        else:
            raise AssertionError(f"accepted: {sql}")
    # A watermark may also be the message timestamp (an INCLUDEd column).
    conn.execute(f"""CREATE SOURCE stamped (id BIGINT, WATERMARK FOR kts AS kts - INTERVAL '1' MINUTE)
                     INCLUDE timestamp AS kts
                     WITH (connector='kafka', topic='quiet', properties.bootstrap.server='{kafka.bootstrap}')
                     FORMAT JSON""")
    conn.execute("DROP SOURCE stamped")
    # Partition 1 never gets a message: once idle (1 s) it stops holding the watermark back;
    # then, with every partition idle, the watermark moves on with the wall clock.
    conn.execute(bids_ddl("quiet", "quiet", kafka.bootstrap, idle="1s"))
    send(kafka.producer(), "quiet", [(0, json.dumps(bid(i, i)).encode(), None) for i in range(10)])
    conn.execute("FLUSH")
    expected = EPOCH + datetime.timedelta(seconds=9 - 5)

    def mark():
        rows = conn.execute("SELECT watermark FROM freshet_internal.source_watermarks "
                            "WHERE source = 'quiet'").fetchall()
        return rows[0][0].replace(tzinfo=None) if rows and rows[0][0] else None

    wait_for(lambda: mark() is not None and mark() >= expected, timeout=30,
             what="the idle partition to stop holding the watermark back")
    first = mark()
    wait_for(lambda: mark() > first + SEC, timeout=30, what="the watermark to move with the clock")
    # A row now below the (clock-moved) watermark is late.
    send(kafka.producer(), "quiet", [(1, json.dumps(bid(50, 5)).encode(), None)])
    conn.execute("FLUSH")
    assert conn.execute("SELECT count(*) FROM freshet_internal.late_rows").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM quiet").fetchone() == (10,)
