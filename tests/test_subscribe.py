"""SUBSCRIBE: changefeeds of views and tables, read by real clients.

The differential check: a long-running `COPY (SUBSCRIBE v WITH (PROGRESS)) TO STDOUT` applies
its diffs to an empty multiset; after every round of random DML a fresh snapshot (a cursor's
snapshot rows, with the epoch they are as of) must equal both that multiset at the same epoch
and what PostgreSQL computes from scratch for the same data.
"""

import collections
import json
import os
import random
import subprocess

import psycopg
import pytest

from conftest import Freshet, wait_for
from test_kafka import send

SETUP = [
    "CREATE TABLE a (id INT PRIMARY KEY, v INT, g INT)",
    "CREATE TABLE b (id INT, w INT)",
]
VIEWS = {
    "va": "SELECT g, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi FROM a GROUP BY g",
    "vj": "SELECT a.id, a.v, b.w FROM a JOIN b ON a.id = b.id",
    "vf": "SELECT id, v FROM a WHERE v > 0",
}


def _statement(rng):
    k = rng.randrange
    return rng.choice([
        lambda: f"INSERT INTO a VALUES ({k(40)}, {k(-50, 50)}, {k(5)}) ON CONFLICT (id) DO NOTHING",
        lambda: f"UPDATE a SET v = v + {k(-5, 6)} WHERE id % {k(2, 5)} = {k(2)}",
        lambda: f"UPDATE a SET g = {k(5)} WHERE id BETWEEN {k(40)} AND {k(40, 80)}",
        lambda: f"DELETE FROM a WHERE id = {k(40)}",
        lambda: f"INSERT INTO b VALUES ({k(40)}, {k(100)}), ({k(40)}, {k(100)})",
        lambda: f"DELETE FROM b WHERE w > {k(50, 120)}",
        lambda: "UPDATE a SET v = v",  # changes nothing: no diffs
    ])()


def _unescape(field):
    if field == "\\N":
        return None
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field):
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(field[i + 1], field[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Tail:
    """A `COPY (SUBSCRIBE …) TO STDOUT` read line by line, its diffs applied to a multiset."""

    def __init__(self, conn, sql, progress=True):
        self.cur = conn.cursor()
        self.cm = self.cur.copy(sql)
        self.copy = self.cm.__enter__()
        self.progress = progress
        self.pending = b""
        self.state = collections.Counter()
        self.frontier = 0
        self.rows_seen = 0

    def lines(self):
        while b"\n" not in self.pending:
            block = self.copy.read()
            if not block:
                raise EOFError("subscription ended")
            self.pending += bytes(block)
        line, self.pending = self.pending.split(b"\n", 1)
        return [_unescape(f) for f in line.decode().split("\t")]

    def advance_past(self, epoch):
        """Reads until every change of epochs <= `epoch` is applied."""
        while self.frontier <= epoch:
            f = self.lines()
            ep = int(f[0])
            if f[1] == "t":
                assert ep >= self.frontier, f"progress went back: {ep} < {self.frontier}"
                self.frontier = ep
                continue
            assert ep >= self.frontier, f"a change at {ep} after progress {self.frontier}"
            diff = int(f[2])
            row = tuple(None if x is None else int(x) for x in f[3:])
            self.state[row] += diff
            assert self.state[row] >= 0, f"{row} went negative"
            if self.state[row] == 0:
                del self.state[row]
            self.rows_seen += 1

    def close(self):
        self.cm.__exit__(None, None, None)


def _snapshot(conn, view):
    """The view's rows as of some epoch, and that epoch, read through a cursor."""
    with conn.transaction():
        conn.execute(f"DECLARE snap CURSOR FOR SUBSCRIBE {view} WITH (PROGRESS)")
        rows = conn.execute("FETCH ALL snap WITH (timeout = '0s')").fetchall()
    state = collections.Counter()
    epoch = None
    for r in rows:
        if r[1]:
            epoch = r[0] - 1
            break
        state[tuple(r[3:])] += r[2]
    assert epoch is not None, f"no progress row in the snapshot: {rows}"
    return epoch, state


def test_subscribe_differential(freshet, postgres):
    rng = random.Random(int(os.environ.get("FRESHET_SUB_SEED", "7")))
    fc = freshet.connect()
    pg = postgres.connect()
    pg.execute("DROP TABLE IF EXISTS a, b")
    for sql in SETUP:
        fc.execute(sql)
        pg.execute(sql)
    for name, sql in VIEWS.items():
        fc.execute(f"CREATE MATERIALIZED VIEW {name} AS {sql}")
    fc.execute("INSERT INTO a VALUES (1, 5, 1), (2, -3, 1), (3, 7, 2)")
    pg.execute("INSERT INTO a VALUES (1, 5, 1), (2, -3, 1), (3, 7, 2)")
    tails = {}
    for name in [*VIEWS, "a", "b"]:
        tails[name] = Tail(psycopg.connect(freshet.dsn(), autocommit=True),
                           f"COPY (SUBSCRIBE {name} WITH (PROGRESS)) TO STDOUT")
    # The same queries subscribed to directly: each runs a dataflow of its own.
    queries = {name: Tail(psycopg.connect(freshet.dsn(), autocommit=True),
                          f"COPY (SUBSCRIBE ({sql}) WITH (PROGRESS)) TO STDOUT")
               for name, sql in VIEWS.items()}
    reader = freshet.connect()
    for rnd in range(25):
        for _ in range(rng.randrange(1, 6)):
            sql = _statement(rng)
            fc.execute(sql)
            pg.execute(sql)
        for name, tail in tails.items():
            epoch, snap = _snapshot(reader, name)
            tail.advance_past(epoch)
            assert tail.state == snap, f"round {rnd}: {name} at epoch {epoch}"
            query = VIEWS.get(name, f"SELECT * FROM {name}")
            oracle = collections.Counter(tuple(r) for r in pg.execute(query).fetchall())
            assert snap == oracle, f"round {rnd}: {name} differs from PostgreSQL"
            if name in queries:
                queries[name].advance_past(epoch)
                assert queries[name].state == snap, f"round {rnd}: SUBSCRIBE ({query})"
    assert all(t.rows_seen > 0 for t in [*tails.values(), *queries.values()])
    for t in [*tails.values(), *queries.values()]:
        t.close()


def test_fetch_cursor_and_envelope(freshet):
    c = freshet.connect()
    c.execute("CREATE TABLE t (k INT PRIMARY KEY, v TEXT)")
    c.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    c.execute("CREATE MATERIALIZED VIEW tv AS SELECT k, v FROM t WHERE k < 100")
    sub = freshet.connect()
    with sub.transaction():
        sub.execute("DECLARE c CURSOR FOR SUBSCRIBE tv")
        cur = sub.execute("FETCH ALL c WITH (timeout = '5s')")
        assert [d.name for d in cur.description] == ["freshet_epoch", "freshet_diff", "k", "v"]
        snap = cur.fetchall()
        assert sorted((r[1], r[2], r[3]) for r in snap) == [(1, 1, "one"), (1, 2, "two")]
        start = snap[0][0]
        # Nothing changes: a timeout returns no rows.
        assert sub.execute("FETCH ALL c WITH (timeout = '0.1s')").fetchall() == []
        c.execute("UPDATE t SET v = 'uno' WHERE k = 1")
        c.execute("DELETE FROM t WHERE k = 2")
        got = []
        while len(got) < 3:
            got += sub.execute("FETCH 10 c WITH (timeout = '10s')").fetchall()
        assert all(r[0] > start for r in got)
        assert sorted((r[1], r[2], r[3]) for r in got) == [(-1, 1, "one"), (-1, 2, "two"), (1, 1, "uno")]
        # FETCH n returns at most n rows.
        c.execute("INSERT INTO t VALUES (3, 'c'), (4, 'd'), (5, 'e')")
        assert len(sub.execute("FETCH 2 c WITH (timeout = '10s')").fetchall()) == 2
        assert len(sub.execute("FETCH ALL c WITH (timeout = '10s')").fetchall()) == 1
    # The cursor closed with its block.
    with pytest.raises(psycopg.Error) as e:
        sub.execute("FETCH ALL c")
    assert e.value.sqlstate == "34000"

    with sub.transaction():
        sub.execute("DECLARE u CURSOR FOR SUBSCRIBE t ENVELOPE UPSERT (KEY (k)) WITH (SNAPSHOT = false)")
        c.execute("UPDATE t SET v = 'eins' WHERE k = 1")
        c.execute("DELETE FROM t WHERE k = 3")
        got = []
        while len(got) < 2:
            cur = sub.execute("FETCH ALL u WITH (timeout = '10s')")
            got += cur.fetchall()
        assert [d.name for d in cur.description] == ["freshet_epoch", "freshet_state", "k", "v"]
        assert sorted(r[1:] for r in got) == [("delete", 3, None), ("upsert", 1, "eins")]


def test_copy_subscribe_in_psql_up_to(freshet):
    c = freshet.connect()
    c.execute("CREATE TABLE p (id INT, s TEXT)")
    c.execute("INSERT INTO p VALUES (1, 'tab\there'), (2, NULL)")
    with c.transaction():
        c.execute("DECLARE s CURSOR FOR SUBSCRIBE p WITH (PROGRESS)")
        rows = c.execute("FETCH ALL s WITH (timeout = '0s')").fetchall()
    epoch = rows[0][0]
    # UP TO the next epoch: the snapshot, then the end.
    out = subprocess.run(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(freshet.port), "-U", "tester", "freshet",
         "-c", f"COPY (SUBSCRIBE p UP TO {epoch + 1}) TO STDOUT"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == [f"{epoch}\t1\t1\ttab\\there", f"{epoch}\t1\t2\t\\N"]


def test_subscribe_errors_and_drop(freshet):
    c = freshet.connect()
    c.execute("CREATE TABLE e (id INT PRIMARY KEY, v INT)")
    c.execute("CREATE MATERIALIZED VIEW ev AS SELECT id, v FROM e")
    bad = {
        "SUBSCRIBE nope": "42P01",
        "SUBSCRIBE (SELECT id FROM e) AS OF 1": "0A000",  # a query keeps no changelog
        "SUBSCRIBE (SELECT nope FROM e)": "42703",
        "SUBSCRIBE (SELECT 1 FROM nope)": "42P01",
        "SUBSCRIBE (SELECT id FROM e": "42601",
        "SUBSCRIBE ev AS OF 1": "55000",  # keeps no changelog
        "SUBSCRIBE ev WITH (bogus = 1)": "22023",
        "SUBSCRIBE ev ENVELOPE UPSERT (KEY (nope))": "42703",
        "DECLARE c CURSOR FOR SUBSCRIBE ev": "25P01",
        "FETCH ALL nope": "34000",
        "CLOSE nope": "34000",
        "SUBSCRIBE ev junk": "42601",
    }
    for sql, state in bad.items():
        with pytest.raises(psycopg.Error) as e:
            c.execute(sql)
        assert e.value.sqlstate == state, f"{sql}: {e.value.sqlstate} {e.value}"
    with c.transaction():
        with pytest.raises(psycopg.Error) as e:
            c.execute("SUBSCRIBE ev")
        assert e.value.sqlstate == "25001"
    # The connection still works, and a subscription ends when its view is dropped.
    assert c.execute("SELECT 1").fetchone() == (1,)
    tail = Tail(psycopg.connect(freshet.dsn(), autocommit=True),
                "COPY (SUBSCRIBE ev WITH (PROGRESS)) TO STDOUT")
    c.execute("INSERT INTO e VALUES (1, 1)")
    epoch, _ = _snapshot(c, "ev")
    tail.advance_past(epoch)
    # …and a subscription to a query ends when a relation it reads is dropped.
    qtail = Tail(psycopg.connect(freshet.dsn(), autocommit=True),
                 "COPY (SUBSCRIBE (SELECT v, count(*) AS n FROM ev GROUP BY v) WITH (PROGRESS)) TO STDOUT")
    c.execute("INSERT INTO e VALUES (2, 1)")
    epoch, _ = _snapshot(c, "ev")
    qtail.advance_past(epoch)
    assert qtail.state == {(1, 2): 1}
    c.execute("DROP MATERIALIZED VIEW ev")
    for t in (tail, qtail):
        with pytest.raises(psycopg.Error) as e:
            t.advance_past(1 << 62)
        assert e.value.sqlstate == "42P01"


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_subscriber_is_cut_off(tmp_path):
    server = Freshet(tmp_path, env={"FRESHET_SUBSCRIBER_QUEUE_ROWS": "20000"}).start()
    try:
        c = server.connect()
        c.execute("CREATE TABLE big (id BIGINT PRIMARY KEY, s TEXT)")
        idle = psycopg.connect(server.dsn(), autocommit=True)
        tail = Tail(idle, "COPY (SUBSCRIBE big) TO STDOUT", progress=False)
        before = _rss_kb(server.proc.pid)
        n, chunk = 300_000, 50_000
        for start in range(0, n, chunk):
            with c.cursor().copy("COPY big FROM STDIN") as cp:
                for i in range(start, start + chunk):
                    cp.write_row((i, "x" * 40))
        after = _rss_kb(server.proc.pid)
        # The writer never waited on the subscriber, whose queue stayed bounded.
        assert c.execute("SELECT count(*) FROM big").fetchone() == (n,)
        assert after - before < 400_000, f"RSS grew {before} -> {after} kB"
        with pytest.raises(psycopg.Error) as e:
            while True:
                tail.lines()
        assert e.value.sqlstate == "53400"
        assert server.alive()
    finally:
        server.stop()


def test_slow_subscriber_reads_what_it_missed_from_the_changelog(tmp_path):
    """A subscriber that stops reading while 1M rows change: its queue stays bounded (it
    stops being fed), and once it reads again it gets every change from the view's changelog,
    then follows live — none missing, none twice."""
    server = Freshet(tmp_path, env={"FRESHET_SUBSCRIBER_QUEUE_ROWS": "20000"}).start()
    try:
        c = server.connect()
        c.execute("CREATE TABLE big (id BIGINT PRIMARY KEY, v BIGINT)")
        c.execute("CREATE MATERIALIZED VIEW bigv WITH (retain_changes = '1h') AS "
                  "SELECT id, v FROM big WHERE v % 3 <> 0")
        c.execute("INSERT INTO big VALUES (-1, 1)")
        tail = Tail(psycopg.connect(server.dsn(), autocommit=True),
                    "COPY (SUBSCRIBE bigv WITH (PROGRESS)) TO STDOUT")
        tail.advance_past(0)
        rss_before = _rss_kb(server.proc.pid)
        n, chunk = 1_000_000, 100_000
        for start in range(0, n, chunk):
            with c.cursor().copy("COPY big FROM STDIN") as cp:
                for i in range(start, start + chunk):
                    cp.write_row((i, i))
        c.execute("DELETE FROM big WHERE id % 10 = 1")  # retractions, in one epoch
        rss_after = _rss_kb(server.proc.pid)
        metrics = dict(c.execute("SELECT name, value FROM freshet_internal.metrics").fetchall())
        latest = metrics["latest_epoch"]
        # Not fed while behind: its queue holds at most the limit of the ~700k rows it missed.
        assert metrics["subscribers_behind"] == 1
        assert metrics["subscriber_queued_rows"] <= 20_000, metrics
        # (RocksDB's memtables hold the million rows three times: table, view, changelog.)
        assert rss_after - rss_before < 600_000, f"RSS grew {rss_before} -> {rss_after} kB"
        tail.advance_past(latest - 1)
        want = collections.Counter({(-1, 1): 1})
        want.update((i, i) for i in range(n) if i % 3 != 0 and i % 10 != 1)
        assert tail.state == want
        # Live again: a change after it caught up arrives through the feed.
        c.execute("INSERT INTO big VALUES (-2, 2)")
        tail.advance_past(latest + 1)
        assert tail.state[(-2, 2)] == 1
        assert c.execute("SELECT value FROM freshet_internal.metrics "
                         "WHERE name = 'subscribers_behind'").fetchone() == (0,)
        # A new subscriber's snapshot of the ~600k rows, handed out a page at a time.
        fresh = Tail(psycopg.connect(server.dsn(), autocommit=True),
                     "COPY (SUBSCRIBE bigv WITH (PROGRESS)) TO STDOUT")
        fresh.advance_past(latest + 1)
        assert fresh.state == tail.state
        assert server.alive()
    finally:
        server.stop()


def test_resume_as_of_after_disconnect_and_kill9(tmp_path):
    """A subscriber that disconnects, then comes back AS OF its last epoch + 1 with SNAPSHOT =
    false, gets every change since, none twice — across a kill -9 of the server too."""
    server = Freshet(tmp_path).start()
    try:
        c = server.connect()
        c.execute("CREATE TABLE r (id INT PRIMARY KEY, v INT)")
        c.execute("INSERT INTO r VALUES (1, 1), (2, 2)")
        c.execute("CREATE MATERIALIZED VIEW rv WITH (retain_changes = '1h') AS "
                  "SELECT v % 3 AS k, count(*) AS n, sum(v) AS s FROM r GROUP BY v % 3")
        c.execute("CREATE MATERIALIZED VIEW rn AS SELECT id FROM r")
        rng = random.Random(11)

        def churn(n):
            for _ in range(n):
                i = rng.randrange(30)
                c.execute(rng.choice([
                    f"INSERT INTO r VALUES ({i}, {rng.randrange(100)}) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
                    f"DELETE FROM r WHERE id = {i}",
                    f"UPDATE r SET v = v + 1 WHERE id % 4 = {i % 4}",
                ]))

        tail = Tail(psycopg.connect(server.dsn(), autocommit=True),
                    "COPY (SUBSCRIBE rv WITH (PROGRESS)) TO STDOUT")
        churn(20)
        last, snap = _snapshot(c, "rv")
        tail.advance_past(last)
        assert tail.state == snap
        seen = collections.Counter(tail.state)
        tail.cur.connection.close()

        churn(15)  # while disconnected
        # The state as of `last`, rebuilt from the changelog: equals what the tail had.
        with c.transaction():
            c.execute(f"DECLARE back CURSOR FOR SUBSCRIBE rv WITH (PROGRESS) AS OF {last + 1}")
            rows = c.execute("FETCH ALL back WITH (timeout = '0s')").fetchall()
        past = collections.Counter()
        for r in rows:
            if r[1]:
                break
            if r[0] == last:
                past[tuple(r[3:])] += r[2]
        assert past == seen

        server.kill9()
        server.start()
        c = server.connect()
        churn(15)
        now, snap = _snapshot(c, "rv")
        again = Tail(psycopg.connect(server.dsn(), autocommit=True),
                     f"COPY (SUBSCRIBE rv WITH (PROGRESS, SNAPSHOT = false) AS OF {last + 1}) TO STDOUT")
        again.state = collections.Counter(seen)
        again.frontier = last + 1
        again.advance_past(now)
        assert again.state == snap, "resumed subscriber missed or repeated changes"
        assert again.rows_seen > 0

        # Views without a changelog, and epochs before it, are refused.
        for sql, state in {f"SUBSCRIBE rn AS OF {now}": "55000", "SUBSCRIBE rv AS OF 1": "55000",
                           f"SUBSCRIBE rv AS OF {now + 100}": "22023"}.items():
            with pytest.raises(psycopg.Error) as e:
                c.execute(sql)
            assert e.value.sqlstate == state, sql
    finally:
        server.stop()


def test_changelog_retention_expires(freshet):
    c = freshet.connect()
    c.execute("CREATE TABLE x (id INT PRIMARY KEY)")
    c.execute("CREATE MATERIALIZED VIEW xv WITH (retain_changes = '200ms') AS SELECT id FROM x")
    c.execute("INSERT INTO x VALUES (1)")
    first, _ = _snapshot(c, "xv")
    # Readable now...
    with c.transaction():
        c.execute(f"DECLARE ok CURSOR FOR SUBSCRIBE xv WITH (SNAPSHOT = false) AS OF {first}")
        assert c.execute("FETCH ALL ok WITH (timeout = '0s')").fetchall()[0][1:] == (1, 1)
    # ...and refused once pruned (pruning runs with later commits).
    n = [1]

    def pruned():
        n[0] += 1
        c.execute(f"INSERT INTO x VALUES ({n[0]})")
        try:
            with c.transaction():
                c.execute(f"DECLARE p CURSOR FOR SUBSCRIBE xv WITH (SNAPSHOT = false) AS OF {first}")
        except psycopg.Error as e:
            assert e.sqlstate == "55000", e
            return True
        return False
    wait_for(pruned, timeout=30, what="the changelog to expire")
    with pytest.raises(psycopg.Error) as e:
        c.execute("CREATE MATERIALIZED VIEW bad WITH (retain = '1s') AS SELECT id FROM x")
    assert e.value.sqlstate == "22023"


def test_a_block_is_one_epoch_and_a_rollback_is_nothing(freshet):
    c = freshet.connect()
    c.execute("CREATE TABLE k (id INT PRIMARY KEY, v INT)")
    sub = freshet.connect()
    with sub.transaction():
        sub.execute("DECLARE c CURSOR FOR SUBSCRIBE k WITH (SNAPSHOT = false, PROGRESS)")
        c.execute("BEGIN")
        c.execute("INSERT INTO k VALUES (1, 1)")
        c.execute("INSERT INTO k VALUES (2, 2)")
        c.execute("UPDATE k SET v = 10 WHERE id = 1")
        c.execute("COMMIT")
        c.execute("BEGIN")
        c.execute("INSERT INTO k VALUES (3, 3)")
        c.execute("ROLLBACK")
        c.execute("INSERT INTO k VALUES (4, 4)")
        rows = []
        for _ in range(50):
            if len([r for r in rows if not r[1]]) >= 3:
                break
            rows += sub.execute("FETCH ALL c WITH (timeout = '10s')").fetchall()
        rows += sub.execute("FETCH ALL c WITH (timeout = '0.3s')").fetchall()
        changes = [r for r in rows if not r[1]]
        epochs = sorted({r[0] for r in changes})
        assert len(epochs) == 2, changes  # the block, then the lone INSERT
        first = sorted((r[2], r[3], r[4]) for r in changes if r[0] == epochs[0])
        assert first == [(1, 1, 10), (1, 2, 2)]  # the block's net effect, atomically
        assert [(r[2], r[3]) for r in changes if r[0] == epochs[1]] == [(1, 4)]
        assert all(r[3] != 3 for r in changes)  # the rolled-back row never appears


def test_subscribe_to_a_query_across_kill9(tmp_path):
    """A query's dataflow lives as long as its subscription: a crash leaves its state behind,
    and the next start deletes it (the next subscription's dataflow would otherwise find it)."""
    server = Freshet(tmp_path).start()
    try:
        c = server.connect()
        c.execute("CREATE TABLE k (id INT PRIMARY KEY, g INT)")
        c.execute("INSERT INTO k SELECT i, i % 3 FROM generate_series(1, 30) AS s(i)")
        q = "(SELECT g, count(*) AS n FROM k GROUP BY g)"
        want = {(0, 10): 1, (1, 10): 1, (2, 10): 1}
        tail = Tail(psycopg.connect(server.dsn(), autocommit=True),
                    f"COPY (SUBSCRIBE {q} WITH (PROGRESS)) TO STDOUT")
        c.execute("INSERT INTO k VALUES (31, 0)")
        epoch, snap = _snapshot(c, q)
        tail.advance_past(epoch)
        assert tail.state == snap == {(0, 11): 1, (1, 10): 1, (2, 10): 1}
        server.kill9()
        server.start()
        c = server.connect()
        c.execute("DELETE FROM k WHERE id = 31")
        epoch, snap = _snapshot(c, q)
        assert snap == want
        tail = Tail(psycopg.connect(server.dsn(), autocommit=True),
                    f"COPY (SUBSCRIBE {q} WITH (PROGRESS)) TO STDOUT")
        c.execute("UPDATE k SET g = 1 WHERE id = 3")
        epoch, snap = _snapshot(c, q)
        tail.advance_past(epoch)
        assert tail.state == snap == {(0, 9): 1, (1, 11): 1, (2, 10): 1}
    finally:
        server.stop()


KAFKA_VIEWS = {
    "kg": "SELECT g, count(*) AS n, sum(score) AS s, max(score) AS hi FROM ev GROUP BY g",
    "kj": "SELECT ev.id, d.w FROM ev JOIN dims d ON ev.g = d.g",
    "kt": "SELECT id, score FROM ev ORDER BY score DESC, id LIMIT 5",
}


def test_subscribe_differential_over_kafka(kafka, freshet, postgres):
    """Views over a Kafka source (and a table): their subscriptions, and a subscription to one
    view's query, applied to empty multisets equal the views at every checked epoch, which
    equal PostgreSQL's results over the same messages and rows."""
    rng = random.Random(int(os.environ.get("FRESHET_SUB_SEED", "11")))
    kafka.create_topic("sd", 3)
    producer = kafka.producer()
    fc = freshet.connect()
    pg = postgres.connect()
    pg.execute("DROP TABLE IF EXISTS ev, dims")
    pg.execute("CREATE TABLE ev (id BIGINT, g BIGINT, score BIGINT)")
    for conn in (fc, pg):
        conn.execute("CREATE TABLE dims (g BIGINT PRIMARY KEY, w BIGINT)")
        conn.execute("INSERT INTO dims VALUES (0, 100), (1, 101), (2, 102)")
    fc.execute(f"""CREATE SOURCE ev (id BIGINT, g BIGINT, score BIGINT)
                   WITH (connector = 'kafka', topic = 'sd',
                         properties.bootstrap.server = '{kafka.bootstrap}') FORMAT PLAIN ENCODE JSON""")
    for name, sql in KAFKA_VIEWS.items():
        fc.execute(f"CREATE MATERIALIZED VIEW {name} AS {sql}")
    tails = {name: Tail(psycopg.connect(freshet.dsn(), autocommit=True),
                        f"COPY (SUBSCRIBE {name} WITH (PROGRESS)) TO STDOUT") for name in KAFKA_VIEWS}
    query = Tail(psycopg.connect(freshet.dsn(), autocommit=True),
                 f"COPY (SUBSCRIBE ({KAFKA_VIEWS['kg']}) WITH (PROGRESS)) TO STDOUT")
    reader = freshet.connect()
    next_id = 0
    for rnd in range(12):
        batch = []
        for _ in range(rng.randrange(1, 40)):
            if rng.random() < 0.05:
                batch.append((rng.randrange(3), b'{"id": "not a number"}', None))
                continue
            row = (next_id, rng.randrange(5), rng.randrange(-50, 50))
            next_id += 1
            batch.append((rng.randrange(3), json.dumps(dict(zip(("id", "g", "score"), row))).encode(), None))
            pg.execute("INSERT INTO ev VALUES (%s, %s, %s)", row)
        send(producer, "sd", batch)
        for _ in range(rng.randrange(0, 3)):
            g = rng.randrange(5)
            sql = rng.choice([f"DELETE FROM dims WHERE g = {g}",
                              f"INSERT INTO dims VALUES ({g}, {rng.randrange(1000)}) "
                              f"ON CONFLICT (g) DO UPDATE SET w = excluded.w"])
            fc.execute(sql)
            pg.execute(sql)
        fc.execute("FLUSH")
        for name, tail in tails.items():
            epoch, snap = _snapshot(reader, name)
            tail.advance_past(epoch)
            assert tail.state == snap, f"round {rnd}: {name} at epoch {epoch}"
            oracle = collections.Counter(tuple(r) for r in pg.execute(KAFKA_VIEWS[name]).fetchall())
            assert snap == oracle, f"round {rnd}: {name} differs from PostgreSQL"
            if name == "kg":
                query.advance_past(epoch)
                assert query.state == snap, f"round {rnd}: SUBSCRIBE (query) at epoch {epoch}"
    assert all(t.rows_seen > 0 for t in [*tails.values(), query])
    assert fc.execute("SELECT count(*) FROM freshet_internal.source_errors").fetchone()[0] > 0
    for t in [*tails.values(), query]:
        t.close()
