"""EMIT ON WINDOW CLOSE: windowed views over a Kafka source with a watermark show each window
once, when the watermark passes its end, and never change it; PostgreSQL computes the closed
windows from scratch over the admitted rows as the oracle. Out-of-order and late rows, idle
sources, kill -9, the state of closed windows deleted, and a Parquet sink of the result."""
import collections
import datetime
import json
import random
import subprocess
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from conftest import Freshet, read_messages, wait_for
from test_event_time import EPOCH, bid, bids_ddl
from test_kafka import produce, send

# name: (view query, the same from scratch in PostgreSQL over the admitted rows, keeping the
# windows the watermark %(w)s has closed)
VIEWS = {
    "t_closed": (
        "SELECT window_start, window_end, count(*) AS n, sum(price) AS total, max(price) AS hi "
        "FROM TUMBLE(bids, ts, INTERVAL '10 seconds') GROUP BY window_start, window_end",
        "SELECT ws, ws + interval '10 seconds', count(*), sum(price), max(price) FROM "
        "(SELECT *, date_bin('10 seconds', ts, '1970-01-01') AS ws FROM bids) b "
        "GROUP BY ws HAVING ws + interval '10 seconds' <= %(w)s"),
    "h_closed": (
        "SELECT window_start, max(price) AS hi, count(*) AS n "
        "FROM HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds') AS h GROUP BY window_start",
        "SELECT ws, max(price), count(*) FROM "
        "(SELECT *, date_bin('2 seconds', ts, '1970-01-01') - i * interval '2 seconds' AS ws "
        " FROM bids, generate_series(0, 4) AS i) b "
        "GROUP BY ws HAVING ws + interval '10 seconds' <= %(w)s"),
    "o_closed": (
        "SELECT window_start, window_end, count(*) AS n "
        "FROM TUMBLE(bids, ts, INTERVAL '10 seconds', INTERVAL '3 seconds') "
        "GROUP BY window_start, window_end",
        "SELECT ws, ws + interval '10 seconds', count(*) FROM "
        "(SELECT *, date_bin('10 seconds', ts, '1970-01-01 00:00:03') AS ws FROM bids) b "
        "GROUP BY ws HAVING ws + interval '10 seconds' <= %(w)s"),
    "r_closed": (
        "SELECT id, price, window_end FROM TUMBLE(bids, ts, INTERVAL '5 seconds') WHERE price > 50",
        "SELECT id, price, we FROM (SELECT *, date_bin('5 seconds', ts, '1970-01-01') "
        "+ interval '5 seconds' AS we FROM bids) b WHERE price > 50 AND we <= %(w)s"),
}
# The same tumbling aggregate, emitted on update: its rows stay, the state of closed windows
# goes all the same.
OPEN_TWIN = ("SELECT window_start, count(*) AS n, sum(price) AS total, max(price) AS hi "
             "FROM TUMBLE(bids, ts, INTERVAL '10 seconds') GROUP BY window_start",
             "SELECT date_bin('10 seconds', ts, '1970-01-01'), count(*), sum(price), max(price) "
             "FROM bids GROUP BY 1")


def watermark(conn, source="bids"):
    rows = conn.execute("SELECT DISTINCT watermark FROM freshet_internal.source_watermarks "
                        "WHERE source = %s", (source,)).fetchall()
    assert len(rows) == 1 and rows[0][0] is not None, rows
    return rows[0][0].replace(tzinfo=None)


def state_entries(conn):
    """Per view, the entries of its operators' state."""
    return dict(conn.execute("SELECT view, operator_entries FROM freshet_internal.view_state").fetchall())


def test_emit_on_window_close(kafka, tmp_path, postgres):
    kafka.create_topic("closing", 2)
    kafka.create_topic("closing_quiet", 1)
    producer = kafka.producer()
    server = Freshet(tmp_path).start()
    pg = postgres.connect()
    # A schema of its own: other tests' oracles have a table "bids" too.
    pg.execute("CREATE SCHEMA closing")
    pg.execute("SET search_path TO closing")
    pg.execute("CREATE TABLE bids (id BIGINT, price BIGINT, ts TIMESTAMP)")
    sent = {}  # (partition, offset) -> bid
    try:
        conn = server.connect()
        conn.autocommit = True
        conn.execute(bids_ddl("bids", "closing", kafka.bootstrap))
        for name, (q, _) in VIEWS.items():
            conn.execute(f"CREATE MATERIALIZED VIEW {name} AS {q} EMIT ON WINDOW CLOSE")
        conn.execute(f"CREATE MATERIALIZED VIEW t_open AS {OPEN_TWIN[0]}")
        plan = conn.execute(f"EXPLAIN CREATE MATERIALIZED VIEW x AS {VIEWS['t_closed'][0]} "
                            "emit on window close").fetchall()
        plan = "\n".join(r[0] for r in plan)
        assert "EmitOnWindowClose" in plan and "closes group column 0 below" in plan, plan

        # Refused: nothing bounds a column by a watermark; the clause elsewhere.
        conn.execute("CREATE TABLE plain (ts TIMESTAMP)")
        for sql, state in [
            ("CREATE MATERIALIZED VIEW e1 AS SELECT count(*) FROM bids EMIT ON WINDOW CLOSE", "0A000"),
            ("CREATE MATERIALIZED VIEW e2 AS SELECT window_start, count(*) FROM "
             "TUMBLE(plain, ts, INTERVAL '1 minute') GROUP BY 1 EMIT ON WINDOW CLOSE", "0A000"),
            ("SELECT * FROM bids EMIT ON WINDOW CLOSE", "42601"),
            ("CREATE MATERIALIZED VIEW e3 WITH (emit = 'sometimes') AS SELECT 1", "22023"),
        ]:
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql)
            assert e.value.sqlstate == state, (sql, e.value.sqlstate, str(e.value))

        # The closed windows go out to Parquet as they close: append-only, no option needed.
        out = tmp_path / "closed"
        conn.execute(f"CREATE SINK closed_out FROM t_closed WITH (connector = 'file', path = '{out}', "
                     "rollover_seconds = 0.2) FORMAT PLAIN ENCODE PARQUET")

        def produce(bids):
            where = send(producer, "closing", [(p, json.dumps(b).encode(), None) for p, b in bids])
            for (_, b), at in zip(bids, where):
                sent[at] = b

        def check(previous=None):
            """Every view equals PostgreSQL's closed windows; rows emitted before are kept."""
            late = {(p, o) for p, o in conn.execute(
                'SELECT partition, "offset" FROM freshet_internal.late_rows').fetchall()}
            pg.execute("TRUNCATE bids")
            with pg.cursor().copy("COPY bids (id, price, ts) FROM STDIN") as cp:
                for at, b in sent.items():
                    if at not in late:
                        cp.write_row((b["id"], b["price"], b["ts"]))
            w = watermark(conn)
            seen = {}
            for name, (_, oracle) in VIEWS.items():
                ours = sorted(conn.execute(f"SELECT * FROM {name}").fetchall())
                theirs = sorted(tuple(r) for r in pg.execute(oracle, {"w": w}).fetchall())
                assert ours == theirs, f"{name} differs from PostgreSQL at watermark {w}"
                assert len(theirs) > 0, name
                if previous:
                    gone = collections.Counter(previous[name]) - collections.Counter(ours)
                    assert not gone, f"{name} changed rows it had emitted: {gone}"
                seen[name] = ours
            ours = sorted(conn.execute("SELECT * FROM t_open").fetchall())
            assert ours == sorted(tuple(r) for r in pg.execute(OPEN_TWIN[1]).fetchall()), "t_open"
            return seen, late

        # Phase 1: each partition in time order, 0 … 100 s.
        produce([(i % 2, bid(i, i * 0.25)) for i in range(400)])
        conn.execute("FLUSH")
        assert watermark(conn) == EPOCH + datetime.timedelta(seconds=398 * 0.25 - 5)
        seen, _ = check()
        entries1 = state_entries(conn)

        # Phase 2: out of order within the allowed delay, and rows far behind (late).
        rng = random.Random(7)
        phase2 = [(i % 2, bid(i, 96 + rng.random() * 40)) for i in range(400, 700)]
        phase2 += [(i % 2, bid(i, 10 + rng.random() * 50)) for i in range(700, 760)]
        rng.shuffle(phase2)
        produce(phase2)
        conn.execute("FLUSH")
        seen, late = check(seen)
        assert len(late) >= 60, "the rows 40 s or more behind are late"
        # Each view over the source counts the late rows it skipped.
        counts = {(v, s): n for v, s, n in conn.execute(
            "SELECT view, source, late_rows FROM freshet_internal.view_late_rows").fetchall()}
        assert {counts.get((name, "bids")) for name in list(VIEWS) + ["t_open"]} == {len(late)}, counts

        # kill -9: emitted windows stay, pending ones close later exactly once.
        server.kill9()
        server.start()
        conn = server.connect()
        conn.autocommit = True
        seen, _ = check(seen)
        produce([(i % 2, bid(i, 140 + (i - 800) * 0.2)) for i in range(800, 1300)])
        conn.execute("FLUSH")
        seen, _ = check(seen)

        # Ten times the windows of phase 1 pass: closed windows' state is deleted, so the
        # state stays that of the open windows, in both emit modes.
        produce([(i % 2, bid(i, 240 + (i - 2000) * 0.25)) for i in range(2000, 6000)])
        conn.execute("FLUSH")
        seen, _ = check(seen)
        entries3 = state_entries(conn)
        for name in list(VIEWS) + ["t_open"]:
            assert entries3[name] <= 2 * entries1[name], (name, entries1, entries3)
        windows = conn.execute("SELECT count(*) FROM t_open").fetchone()[0]
        assert windows >= 10 * 10, windows  # …while the emitted-on-update rows all stay

        # The sink holds each closed window once.
        def sunk():
            rows = collections.Counter()
            for f in sorted(Path(out).rglob("part-*.parquet")):
                t = pq.ParquetFile(f).read()
                cols = [t.column(c).to_pylist() for c in ("window_start", "n", "total", "hi")]
                rows.update(zip(*cols))
            return rows
        want = collections.Counter((r[0], r[2], r[3], r[4]) for r in seen["t_closed"])
        wait_for(lambda: sunk() == want, timeout=60, what="the sink to hold every closed window")

        # An idle source: its watermark moves with the clock and closes the last windows.
        conn.execute(bids_ddl("quiet", "closing_quiet", kafka.bootstrap, idle="1s"))
        conn.execute("CREATE MATERIALIZED VIEW q_closed AS SELECT window_start, count(*) AS n "
                     "FROM TUMBLE(quiet, ts, INTERVAL '1 second') GROUP BY window_start "
                     "EMIT ON WINDOW CLOSE")
        send(producer, "closing_quiet", [(0, json.dumps(bid(i, i)).encode(), None) for i in range(10)])
        conn.execute("FLUSH")
        windows = [(EPOCH + datetime.timedelta(seconds=i), 1) for i in range(10)]
        wait_for(lambda: sorted(conn.execute("SELECT * FROM q_closed").fetchall()) == windows,
                 timeout=60, what="the idle source's last window to close")
    finally:
        server.stop()


def topic_timestamps(kafka, topic, partitions):
    """Every message's (partition, offset) → Kafka timestamp (ms), read back from the broker."""
    return {(p, o): ts for p, o, ts, _, _, _ in read_messages(kafka.bootstrap, topic, partitions)}


def test_tweet_windows_to_parquet_exactly_once_across_kill9(kafka, tmp_path, postgres):
    """Tweets from the generator, a per-second count of them closed by the watermark on the
    Kafka timestamp, sunk to Parquet: after 10 kill -9 rounds each window is in the files
    exactly once and equals PostgreSQL's count of the admitted tweets; tweets stamped a
    minute in the past are late and recorded."""
    from conftest import FRESHET_BIN
    kafka.create_topic("tw_closing", 4)
    ddl = Path(__file__).resolve().parent.parent.joinpath("examples/tweets/create_source.sql").read_text()
    ddl = (ddl.replace("timestamp_ms VARCHAR\n)",
                       "timestamp_ms VARCHAR,\n    WATERMARK FOR kafka_ts AS kafka_ts - INTERVAL '2 seconds'\n)")
              .replace("topic = 'tweets'", "topic = 'tw_closing'")
              .replace("'127.0.0.1:9092'", f"'{kafka.bootstrap}'")
              .replace("scan.startup.mode = 'earliest'",
                       "scan.startup.mode = 'earliest', watermark.idle_timeout = '1s'"))
    assert "WATERMARK FOR" in ddl and kafka.bootstrap in ddl
    server = Freshet(tmp_path).start()
    out = tmp_path / "per_second"
    generator = subprocess.Popen(
        [str(Path(FRESHET_BIN).parent / "freshet-tweets"), "--bootstrap", kafka.bootstrap,
         "--topic", "tw_closing", "--rate", "150"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = server.connect()
        c.execute("\n".join(l for l in ddl.splitlines() if not l.startswith("--")))
        c.execute("CREATE MATERIALIZED VIEW per_second AS SELECT window_start, count(*) AS n "
                  "FROM TUMBLE(tweets, kafka_ts, INTERVAL '1 second') GROUP BY window_start "
                  "EMIT ON WINDOW CLOSE")
        c.execute(f"CREATE SINK per_second_files FROM per_second WITH (connector = 'file', "
                  f"path = '{out}', rollover_seconds = 0.2) FORMAT PLAIN ENCODE PARQUET")
        producer = kafka.producer()
        # The watermark has passed a window before the first stale tweets are sent.
        wait_for(lambda: any(out.rglob("part-*.parquet")), timeout=60, what="a first closed window")
        stale = []
        for rnd in range(10):
            # Two tweets a minute old: late whenever they arrive.
            old = int(time.time() * 1000) - 60_000
            for k in range(2):
                stale.append(json.dumps({"id": -(rnd * 2 + k), "text": "from the past"}).encode())
                produce(producer, "tw_closing", stale[-1], k, timestamp=old)
            producer.flush(30)
            want = len(list(out.rglob("part-*.parquet"))) + 2
            wait_for(lambda: len(list(out.rglob("part-*.parquet"))) >= want, timeout=60,
                     what="windows to close and reach the files")
            server.kill9()
            server.start()
        generator.terminate()
        generator.wait(30)
        c = server.connect()
        c.execute("FLUSH")
        # Every message, as the broker holds it; the late ones as freshet recorded them.
        stamps = topic_timestamps(kafka, "tw_closing", 4)
        # The mock broker drops a partition's oldest messages past a few megabytes: the oracle
        # needs them all.
        assert all((p, 0) in stamps for p in range(4)), "the broker dropped the first tweets"
        late = {(p, o) for p, o in c.execute(
            'SELECT partition, "offset" FROM freshet_internal.late_rows').fetchall()}
        assert len(late) >= len(stale), (len(late), len(stale))
        pg = postgres.connect()
        pg.execute("CREATE SCHEMA tweet_windows")
        pg.execute("SET search_path TO tweet_windows")
        pg.execute("CREATE TABLE tweets (kafka_ts TIMESTAMPTZ)")
        with pg.cursor().copy("COPY tweets (kafka_ts) FROM STDIN") as cp:
            for at, ms in stamps.items():
                if at not in late:
                    cp.write_row((datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc),))
        # The source's last windows close as its watermark moves on with the clock.
        last = pg.execute("SELECT max(kafka_ts) FROM tweets").fetchone()[0]
        expected = collections.Counter(
            (ws, n) for ws, n in pg.execute(
                "SELECT date_bin('1 second', kafka_ts, '1970-01-01'), count(*) FROM tweets GROUP BY 1").fetchall())

        def sunk():
            rows = collections.Counter()
            for f in sorted(out.rglob("part-*.parquet")):
                t = pq.ParquetFile(f).read()
                rows.update(zip(t.column("window_start").to_pylist(), t.column("n").to_pylist()))
            return rows

        def normalized(rows):
            return collections.Counter({(ws.replace(tzinfo=None) if ws.tzinfo is None else
                                         ws.astimezone(datetime.timezone.utc).replace(tzinfo=None), n): k
                                        for (ws, n), k in rows.items()})
        want_rows = normalized(expected)
        try:
            wait_for(lambda: normalized(sunk()) == want_rows, timeout=90,
                     what=f"every window up to {last} in the files, once")
        except TimeoutError:
            got = normalized(sunk())
            assert got == want_rows, (sorted((got - want_rows).items()),
                                      sorted((want_rows - got).items()))
        assert sum(n for (_, n) in want_rows) == len(stamps) - len(late)
        assert sorted(c.execute("SELECT count(*) FROM per_second").fetchall()) == [(len(want_rows),)]
    finally:
        if generator.poll() is None:
            generator.kill()
        server.stop()
