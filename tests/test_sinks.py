"""Sinks: Parquet files written exactly once, read back by an independent reader (pyarrow).

Every row of the view appears exactly once across the committed files — after clean runs, and
after kill -9 at random moments while rows flow in.
"""

import collections
import random
import threading
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from conftest import Freshet, wait_for


def _files(path):
    """Committed files, in partition directories too."""
    return sorted(Path(path).rglob("part-*.parquet"))


def _read_all(path, columns):
    rows = collections.Counter()
    for f in _files(path):
        t = pq.ParquetFile(f).read()
        for r in zip(*(t.column(c).to_pylist() for c in columns)):
            rows[r] += 1
    return rows


def _read_dataset(path, columns):
    """The directory as Spark, DuckDB or pyarrow read it: Hive partitions become columns."""
    t = pq.read_table(path, partitioning="hive")
    return collections.Counter(zip(*(t.column(c).to_pylist() for c in columns)))


def _sink_caught_up(conn, name):
    """The sink's committed epoch has reached the latest epoch (checked two ways)."""
    with conn.transaction():
        conn.execute("DECLARE e CURSOR FOR SUBSCRIBE sink_probe WITH (PROGRESS, SNAPSHOT = false)")
        latest = conn.execute("FETCH ALL e WITH (timeout = '0s')").fetchall()[0][0] - 1
    rows = {r[0]: r for r in conn.execute("SHOW SINKS").fetchall()}
    lag = conn.execute("SELECT lag_epochs, committed_epoch FROM freshet_internal.sink_progress "
                       "WHERE sink = %s", (name,)).fetchone()
    return int(rows[name][4]) >= latest and lag[0] == 0 and lag[1] == int(rows[name][4])


def test_parquet_sink_modes_and_errors(freshet, tmp_path):
    c = freshet.connect()
    c.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, s TEXT)")
    c.execute("CREATE TABLE sink_probe_t (x INT)")
    c.execute("CREATE MATERIALIZED VIEW sink_probe AS SELECT x FROM sink_probe_t")
    c.execute("INSERT INTO t VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, NULL)")
    c.execute("CREATE MATERIALIZED VIEW vt AS SELECT id, g, s FROM t")
    c.execute("CREATE MATERIALIZED VIEW vg AS SELECT g, count(*) AS n FROM t GROUP BY g")
    bad = {
        f"CREATE SINK s1 FROM vt WITH (connector = 'file', path = '{tmp_path}/x')": "22023",  # retracts
        f"CREATE SINK s1 FROM t WITH (connector = 'file', path = '{tmp_path}/x')": "0A000",
        f"CREATE SINK s1 FROM nope WITH (connector = 'file', path = '{tmp_path}/x')": "42P01",
        "CREATE SINK s1 FROM vt WITH (connector = 'file')": "22023",
        f"CREATE SINK s1 FROM vt WITH (connector = 'file', path = '{tmp_path}/x', nope = 1)": "22023",
        "CREATE SINK s1 FROM vt WITH (connector = 'file', path = '/proc/forbidden/x', type = 'changelog')": "58030",
        "DROP SINK nope": "42704",
    }
    for sql, state in bad.items():
        with pytest.raises(psycopg.Error) as e:
            c.execute(sql)
        assert e.value.sqlstate == state, f"{sql}: {e.value}"
    c.execute("DROP SINK IF EXISTS nope")

    app = tmp_path / "app"
    log = tmp_path / "log"
    c.execute(f"CREATE SINK s_app FROM vt WITH (connector = 'file', path = '{app}', "
              f"force_append_only = 'true', rollover_rows = 2) FORMAT PLAIN ENCODE PARQUET")
    c.execute(f"CREATE SINK s_log FROM vg WITH (connector = 'file', path = '{log}', "
              f"type = 'changelog', rollover_seconds = 0.2)")
    # The view's rows at creation are the first file.
    assert _read_all(app, ["id", "g", "s"]) == {(1, 1, "a"): 1, (2, 1, "b"): 1, (3, 2, None): 1}
    c.execute("INSERT INTO t VALUES (4, 2, 'd'), (5, 3, 'e')")
    c.execute("DELETE FROM t WHERE id = 1")
    c.execute("UPDATE t SET g = 3 WHERE id = 2")
    c.execute("INSERT INTO sink_probe_t VALUES (1)")
    wait_for(lambda: _sink_caught_up(c, "s_app") and _sink_caught_up(c, "s_log"),
             timeout=60, what="the sinks to catch up")
    got = _read_all(app, ["id", "g", "s"])
    # Arrivals only: the update's new row is there, the deletions are not.
    assert got == {(1, 1, "a"): 1, (2, 1, "b"): 1, (3, 2, None): 1, (4, 2, "d"): 1,
                   (5, 3, "e"): 1, (2, 3, "b"): 1}, got
    # The changelog, applied, is the view.
    state = collections.Counter()
    for (g, n, diff), k in _read_all(log, ["g", "n", "freshet_diff"]).items():
        state[(g, n)] += diff * k
    state = +state
    assert state == collections.Counter(tuple(r) for r in c.execute("SELECT g, n FROM vg").fetchall())
    assert not list(Path(app).glob(".*"))  # no temporary file left
    names = [r[0] for r in c.execute("SHOW SINKS").fetchall()]
    assert names == ["s_app", "s_log"]
    # A view with sinks is not dropped silently.
    with pytest.raises(psycopg.Error) as e:
        c.execute("DROP MATERIALIZED VIEW vg")
    assert e.value.sqlstate == "2BP01"
    c.execute("DROP MATERIALIZED VIEW vg CASCADE")
    c.execute("DROP SINK s_app")
    assert c.execute("SHOW SINKS").fetchall() == []


def test_parquet_sink_partitioned_hive_style(freshet, tmp_path):
    c = freshet.connect()
    c.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, s TEXT, x DOUBLE PRECISION)")
    c.execute("CREATE TABLE sink_probe_t (x INT)")
    c.execute("CREATE MATERIALIZED VIEW sink_probe AS SELECT x FROM sink_probe_t")
    c.execute("CREATE MATERIALIZED VIEW vt AS SELECT id, g, s, x FROM t")
    c.execute("INSERT INTO t VALUES (1, 1, 'a/b=c', 0.5), (2, 1, NULL, 1.5), (3, 2, 'a/b=c', 2.5)")
    base = f"CREATE SINK sp FROM vt WITH (connector = 'file', path = '{tmp_path}/x', force_append_only = 'true'"
    bad = {
        f"{base}, partition_by = 'nope')": "42703",
        f"{base}, partition_by = 'g, G')": "22023",  # twice
        f"{base}, partition_by = 'id, g, s, x')": "22023",  # no column left for the files
        f"{base}, partition_by = 'g,')": "22023",
        f"{base}, partition_by = 'x')": "22023",  # a float names no directory
        f"{base}, rollover_bytes = 0)": "22023",
    }
    for sql, state in bad.items():
        with pytest.raises(psycopg.Error) as e:
            c.execute(sql)
        assert e.value.sqlstate == state, f"{sql}: {e.value}"
    assert not (tmp_path / "x").exists() or not _files(tmp_path / "x")

    out = tmp_path / "parts"
    # Neither rows nor time would close a file for an hour: bytes do.
    c.execute(f"CREATE SINK sp FROM vt WITH (connector = 'file', path = '{out}', "
              f"force_append_only = 'true', partition_by = 'g, s', rollover_rows = 1000000, "
              f"rollover_seconds = 3600, rollover_bytes = 2000)")
    dirs = sorted(str(f.parent.relative_to(out)) for f in _files(out))
    assert dirs == ["g=1/s=__HIVE_DEFAULT_PARTITION__", "g=1/s=a%2Fb%3Dc", "g=2/s=a%2Fb%3Dc"], dirs
    # The partition columns are in the directory names, not in the files.
    assert pq.ParquetFile(_files(out)[0]).schema_arrow.names == ["id", "x"]
    c.execute("INSERT INTO t VALUES (300, 7, '', 1.0)")  # the empty string: the default partition
    c.execute("INSERT INTO t SELECT i, i % 3, 'k' || CAST(i % 2 AS TEXT), i * 0.25 "
              "FROM generate_series(10, 209) AS s(i)")
    c.execute("INSERT INTO sink_probe_t VALUES (1)")
    wait_for(lambda: len(_files(out)) > 3 and _sink_caught_up(c, "sp"), timeout=60,
             what="a file closed by rollover_bytes")
    got = _read_dataset(out, ["id", "g", "s", "x"])
    want = collections.Counter(
        (i, g, s or None, x) for i, g, s, x in c.execute("SELECT id, g, s, x FROM vt").fetchall())
    assert got == want
    assert not [p for p in out.rglob(".*")]


def test_parquet_sink_exactly_once_under_kill9(tmp_path):
    server = Freshet(tmp_path).start()
    out = tmp_path / "out"
    parts = tmp_path / "parts"
    try:
        c = server.connect()
        c.execute("CREATE TABLE ev (id BIGINT PRIMARY KEY, v INT)")
        c.execute("CREATE TABLE sink_probe_t (x INT)")
        c.execute("CREATE MATERIALIZED VIEW sink_probe AS SELECT x FROM sink_probe_t")
        c.execute("CREATE MATERIALIZED VIEW evv AS SELECT id, v FROM ev WHERE v >= 0")
        c.execute(f"CREATE SINK evs FROM evv WITH (connector = 'file', path = '{out}', "
                  f"force_append_only = 'true', rollover_rows = 50, rollover_seconds = 0.05)")
        # Partitioned: each commit writes several files, in directories of their own.
        c.execute(f"CREATE SINK evp FROM evv WITH (connector = 'file', path = '{parts}', "
                  f"force_append_only = 'true', partition_by = 'v', rollover_bytes = 1500, "
                  f"rollover_seconds = 0.05)")
        rng = random.Random(5)
        next_id = 0
        for rnd in range(20):
            stop = threading.Event()

            def write(start):
                conn = psycopg.connect(server.dsn(), autocommit=True)
                i = start
                try:
                    while not stop.is_set():
                        values = ", ".join(f"({g}, {g % 7})" for g in range(i, i + 20))
                        conn.execute(f"INSERT INTO ev VALUES {values}")
                        i += 20
                except psycopg.Error:
                    pass  # killed
                return i

            t = threading.Thread(target=write, args=(next_id,))
            t.start()
            # Let some files commit, then kill at a random moment.
            want = len(_files(out)) + rng.randrange(1, 4)
            wait_for(lambda: len(_files(out)) >= want, timeout=60, what="files")
            server.kill9()
            stop.set()
            t.join()
            server.start()
            c = server.connect()
            next_id = c.execute("SELECT coalesce(max(id), -1) + 1 FROM ev").fetchone()[0] + 1000
        c.execute("INSERT INTO sink_probe_t VALUES (1)")
        wait_for(lambda: _sink_caught_up(c, "evs") and _sink_caught_up(c, "evp"), timeout=60,
                 what="the sinks to catch up")
        expected = collections.Counter(tuple(r) for r in c.execute("SELECT id, v FROM evv").fetchall())
        assert len(expected) > 1000
        for written in (_read_all(out, ["id", "v"]), _read_dataset(parts, ["id", "v"])):
            dupes = {r: n for r, n in written.items() if n > 1}
            assert not dupes, f"rows in two files: {list(dupes)[:5]}"
            assert written == expected, (len(written), len(expected))
        assert not list(Path(out).glob(".*"))
        assert not list(Path(parts).rglob(".*"))
        assert len(list(parts.iterdir())) == 7  # v = id % 7
    finally:
        server.stop()


def test_origin_workload_tail_and_parquet_from_kafka(kafka, freshet, tmp_path):
    """The tweets tutorial's ending: a live tail of id, user.name, text from a Kafka topic, and
    the same projection in Parquet files whose row count equals the tweets in the topic."""
    import json
    from test_kafka import send, source_ddl
    from test_subscribe import Tail

    kafka.create_topic("tw", 4)
    c = freshet.connect()
    c.execute(source_ddl("tweets", "tw", kafka.bootstrap))
    c.execute('CREATE MATERIALIZED VIEW tweet_texts AS SELECT id, ("user").name AS name, text FROM tweets')
    c.execute("CREATE TABLE sink_probe_t (x INT)")
    c.execute("CREATE MATERIALIZED VIEW sink_probe AS SELECT x FROM sink_probe_t")
    files = tmp_path / "tweets"
    c.execute(f"CREATE SINK tweet_files FROM tweet_texts WITH (connector = 'file', path = '{files}', "
              f"rollover_rows = 300) FORMAT PLAIN ENCODE PARQUET")
    tail = Tail(psycopg.connect(freshet.dsn(), autocommit=True),
                "COPY (SUBSCRIBE tweet_texts WITH (SNAPSHOT = false)) TO STDOUT", progress=False)
    n = 1000
    msgs = [(i % 4, json.dumps({"id": i, "text": f"tweet\t{i}", "user": {"name": f"u{i % 10}"}}).encode(), None)
            for i in range(n)]
    send(kafka.producer(), "tw", msgs)
    got = {}
    while len(got) < n:
        f = tail.lines()
        assert f[1] == "1"
        got[int(f[2])] = (f[3], f[4])
    assert got[7] == ("u7", "tweet\t7")
    c.execute("FLUSH")
    c.execute("INSERT INTO sink_probe_t VALUES (1)")
    wait_for(lambda: _sink_caught_up(c, "tweet_files"), timeout=60, what="the sink")
    table = pq.read_table(files)  # the directory, as Spark or DuckDB would read it
    assert table.num_rows == n
    assert sorted(table.column("id").to_pylist()) == list(range(n))
    tail.cur.connection.close()


def test_failing_destination_does_not_hold_up_writes_and_catches_up(freshet, tmp_path):
    c = freshet.connect()
    c.execute("CREATE TABLE w (id INT PRIMARY KEY)")
    c.execute("CREATE TABLE sink_probe_t (x INT)")
    c.execute("CREATE MATERIALIZED VIEW sink_probe AS SELECT x FROM sink_probe_t")
    c.execute("CREATE MATERIALIZED VIEW wv AS SELECT id FROM w")
    out = tmp_path / "dest"
    c.execute(f"CREATE SINK ws FROM wv WITH (connector = 'file', path = '{out}', "
              f"force_append_only = 'true', rollover_rows = 1)")
    c.execute("INSERT INTO w VALUES (1)")
    wait_for(lambda: _sink_caught_up(c, "ws"), timeout=60, what="the sink")
    # The destination breaks: its directory moves away and a file takes its name.
    moved = tmp_path / "moved"
    out.rename(moved)
    out.write_text("not a directory")
    for i in range(2, 40):
        c.execute(f"INSERT INTO w VALUES ({i})")  # writes go on meanwhile

    def retrying():
        status = c.execute("SELECT status, lag_epochs FROM freshet_internal.sink_progress").fetchone()
        return status[0].startswith("retrying") and status[1] > 0
    wait_for(retrying, timeout=60, what="the sink to report its failure")
    # The destination comes back: the sink catches up, nothing lost or written twice.
    out.unlink()
    moved.rename(out)
    c.execute("INSERT INTO sink_probe_t VALUES (1)")
    wait_for(lambda: _sink_caught_up(c, "ws"), timeout=60, what="the sink to catch up")
    assert _read_all(out, ["id"]) == {(i,): 1 for i in range(1, 40)}
    assert c.execute("SELECT status FROM freshet_internal.sink_progress").fetchone() == ("running",)
