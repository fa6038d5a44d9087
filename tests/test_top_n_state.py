"""Top-N per partition (`row_number() … <= k`, `ORDER BY … LIMIT k`) and MIN/MAX: over a source,
whose rows never leave, top-N keeps only the k rows per partition its output depends on and
MIN/MAX keep no values, so their state stays bounded while the stream grows; over a table,
whose rows can be deleted and updated, every row stays. Both equal PostgreSQL's recompute,
also after kill -9."""
import json
import random

from conftest import Freshet
from test_event_time import bid, bids_ddl
from test_kafka import send

KEYS = 20
# name: (view query over relation {r}, the same in PostgreSQL)
VIEWS = {
    "top2": ("SELECT id, price, k, rn FROM (SELECT id, price, id % 20 AS k, row_number() OVER "
             "(PARTITION BY id % 20 ORDER BY price DESC, id) AS rn FROM {r}) t WHERE rn <= 2",) * 2,
    "last1": ("SELECT * FROM (SELECT id, price, row_number() OVER (PARTITION BY id % 20 "
              "ORDER BY ts DESC, id) AS rn FROM {r}) t WHERE rn < 2",) * 2,
    "best3": ("SELECT id, price FROM {r} ORDER BY price DESC, id LIMIT 3",) * 2,
    # MIN/MAX: over a source they follow arrivals and keep no values; a table's keep theirs.
    "mm": ("SELECT id % 20 AS k, min(price) AS lo, max(price) AS hi, count(*) AS n "
           "FROM {r} GROUP BY 1",) * 2,
}


def check(conn, pg, relation):
    for name, (_, oracle) in VIEWS.items():
        ours = sorted(conn.execute(f"SELECT * FROM {relation}_{name}").fetchall())
        theirs = sorted(tuple(r) for r in pg.execute(oracle.format(r=relation)).fetchall())
        assert ours == theirs, f"{relation}_{name} differs from PostgreSQL"
        assert theirs, name


def entries(conn, relation):
    return dict(conn.execute(
        "SELECT view, operator_entries FROM freshet_internal.view_state "
        "WHERE view LIKE %s", (f"{relation}_%",)).fetchall())


def test_top_n_keeps_only_the_rows_it_needs(kafka, tmp_path, postgres):
    kafka.create_topic("topn", 2)
    producer = kafka.producer()
    server = Freshet(tmp_path).start()
    pg = postgres.connect()
    pg.execute("CREATE SCHEMA topn")
    pg.execute("SET search_path TO topn")
    pg.execute("CREATE TABLE bids (id BIGINT, price BIGINT, ts TIMESTAMP)")
    pg.execute("CREATE TABLE tbl (id BIGINT PRIMARY KEY, price BIGINT, ts TIMESTAMP)")
    rng = random.Random(11)
    try:
        conn = server.connect()
        conn.autocommit = True
        conn.execute(bids_ddl("bids", "topn", kafka.bootstrap))
        conn.execute("CREATE TABLE tbl (id BIGINT PRIMARY KEY, price BIGINT, ts TIMESTAMP)")
        for name, (q, _) in VIEWS.items():
            for r in ("bids", "tbl"):
                conn.execute(f"CREATE MATERIALIZED VIEW {r}_{name} AS {q.format(r=r)}")
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN CREATE MATERIALIZED VIEW x AS {VIEWS['top2'][0].format(r='bids')}").fetchall())
        assert "rows=2" in plan, plan
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN CREATE MATERIALIZED VIEW x AS {VIEWS['mm'][0].format(r='bids')}").fetchall())
        assert "min/max from arrivals" in plan, plan

        def produce(first, n):
            # In time order: none is late (a late row stays out of the source's views).
            bids = [bid(i, i * 0.1) for i in range(first, first + n)]
            for b in bids:
                b["price"] = rng.randrange(10_000)
            send(producer, "topn", [(i % 2, json.dumps(b).encode(), None) for i, b in enumerate(bids)])
            with pg.cursor().copy("COPY bids (id, price, ts) FROM STDIN") as cp:
                for b in bids:
                    cp.write_row((b["id"], b["price"], b["ts"]))
            rows = ", ".join(f"({b['id']}, {b['price']}, '{b['ts']}')" for b in bids)
            conn.execute(f"INSERT INTO tbl VALUES {rows}")
            pg.execute(f"INSERT INTO tbl VALUES {rows}")

        produce(0, 400)
        conn.execute("FLUSH")
        check(conn, pg, "bids")
        check(conn, pg, "tbl")
        small = entries(conn, "bids")

        # Ten times the rows: the source's top-N state stays that of k rows per partition
        # (inputs and outputs), the table's keeps every row.
        for first in range(400, 4400, 1000):
            produce(first, 1000)
        conn.execute("FLUSH")
        check(conn, pg, "bids")
        large = entries(conn, "bids")
        assert large["bids_top2"] <= 2 * 2 * KEYS and large["bids_last1"] <= 2 * KEYS, large
        assert large["bids_best3"] <= 2 * 3, large
        for name in VIEWS:
            assert large[f"bids_{name}"] <= max(small[f"bids_{name}"], 1) * 2, (small, large)
        assert large["bids_mm"] <= max(small["bids_mm"], 1) * 2, (small, large)
        assert entries(conn, "tbl")["tbl_top2"] >= 4400, "a table's rows can come back up"
        assert entries(conn, "tbl")["tbl_mm"] >= 1000, "a table's MIN/MAX keep their values"

        # The table's top rows deleted and updated: the rows below them move up.
        for stmt in ["DELETE FROM tbl WHERE price > 9000", "UPDATE tbl SET price = price / 2 WHERE id % 3 = 0"]:
            conn.execute(stmt)
            pg.execute(stmt)
        check(conn, pg, "tbl")

        server.kill9()
        server.start()
        conn = server.connect()
        conn.autocommit = True
        check(conn, pg, "bids")
        check(conn, pg, "tbl")
        produce(4400, 600)
        conn.execute("FLUSH")
        check(conn, pg, "bids")
        check(conn, pg, "tbl")

        # Equal rows arriving (a message sent twice, once in one epoch, once in a later one):
        # counted, ranked one after the other.
        dups = [bid(i, 500 + i * 0.001) for i in range(9000, 9040)]
        for b in dups:
            b["price"] = 9999 if b["id"] % 2 else 9000 + b["id"] % 7
        for rounds in ([dups, dups], [dups]):
            for batch in rounds:
                send(producer, "topn", [(0, json.dumps(b).encode(), None) for b in batch])
                with pg.cursor().copy("COPY bids (id, price, ts) FROM STDIN") as cp:
                    for b in batch:
                        cp.write_row((b["id"], b["price"], b["ts"]))
            conn.execute("FLUSH")
            check(conn, pg, "bids")
    finally:
        server.stop()
