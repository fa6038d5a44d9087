"""Kafka sinks: PLAIN, UPSERT and DEBEZIUM JSON messages read back with confluent-kafka from a
real Kafka-protocol broker process; every change exactly once across kill -9 and a broker
outage; clear errors at CREATE SINK."""

import collections
import json
import random
import subprocess
import threading
import time

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import KILL_ROUNDS, Freshet, read_messages, wait_for
from test_sinks import _sink_caught_up


def read_topic(bootstrap, topic, partitions):
    """Every message of `topic`, per partition in offset order: (key, value, headers)."""
    out = {p: [] for p in range(partitions)}
    for p, _, _, key, value, headers in read_messages(bootstrap, topic, partitions):
        out[p].append((key, value, headers))
    return out


def messages_in(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "counter"})
    n = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    c.close()
    return n


def upserted(messages):
    """The state an UPSERT topic describes: key → value, tombstones removing."""
    state = {}
    for part in messages.values():
        for key, value, _ in part:
            if value is None:
                state.pop(key, None)
            else:
                state[key] = json.loads(value)
    return state


def test_kafka_sink_formats_and_errors(kafka, freshet):
    for topic, n in (("plain", 3), ("ups", 4), ("dbz", 2)):
        kafka.create_topic(topic, n)
    c = freshet.connect()
    c.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, s TEXT, ts TIMESTAMP)")
    c.execute("CREATE TABLE sink_probe_t (x INT)")
    c.execute("CREATE MATERIALIZED VIEW sink_probe AS SELECT x FROM sink_probe_t")
    c.execute("INSERT INTO t VALUES (1, 1, 'a', '2026-12-01 10:00'), (2, 1, 'b', NULL), (3, 2, NULL, NULL)")
    c.execute("CREATE MATERIALIZED VIEW vt AS SELECT id, g, s, ts FROM t")
    c.execute("CREATE MATERIALIZED VIEW vg AS SELECT g, count(*) AS n, max(s) AS top FROM t GROUP BY g")
    b = kafka.bootstrap
    kafka_with = f"connector = 'kafka', properties.bootstrap.server = '{b}'"
    bad = {
        f"CREATE SINK k FROM vt WITH ({kafka_with})": "22023",  # no topic
        f"CREATE SINK k FROM vt WITH ({kafka_with}, topic = 'plain')": "22023",  # retracts
        f"CREATE SINK k FROM vg WITH ({kafka_with}, topic = 'ups') FORMAT UPSERT ENCODE JSON": "22023",
        f"CREATE SINK k FROM vg WITH ({kafka_with}, topic = 'ups', primary_key = 'nope') "
        "FORMAT UPSERT ENCODE JSON": "42703",
        f"CREATE SINK k FROM vg WITH ({kafka_with}, topic = 'ups', primary_key = 'g') "
        "FORMAT UPSERT ENCODE AVRO": "0A000",
        f"CREATE SINK k FROM vg WITH ({kafka_with}, topic = 'ups', primary_key = 'g', "
        "properties.plugin.library.paths = '/tmp/x.so') FORMAT UPSERT ENCODE JSON": "42501",
        f"CREATE SINK k FROM vg WITH ({kafka_with}, topic = 'ups', primary_key = 'g', "
        "properties.enable.idempotence = 'false') FORMAT UPSERT ENCODE JSON": "42501",
        "CREATE SINK k FROM vg WITH (connector = 'kafka', topic = 'ups', primary_key = 'g', "
        "properties.bootstrap.server = '127.0.0.1:1') FORMAT UPSERT ENCODE JSON": "08001",
    }
    for sql, state in bad.items():
        with pytest.raises(psycopg.Error) as e:
            c.execute(sql)
        assert e.value.sqlstate == state, f"{sql}: {e.value}"
    assert c.execute("SHOW SINKS").fetchall() == []

    c.execute(f"CREATE SINK kp FROM vt WITH ({kafka_with}, topic = 'plain', primary_key = 'id') "
              "FORMAT PLAIN ENCODE JSON (force_append_only = 'true')")
    c.execute(f"CREATE SINK ku FROM vg WITH ({kafka_with}, topic = 'ups', primary_key = 'g') "
              "FORMAT UPSERT ENCODE JSON")
    c.execute(f"CREATE SINK kd FROM vt WITH ({kafka_with}, topic = 'dbz', primary_key = 'id') "
              "FORMAT DEBEZIUM ENCODE JSON")
    c.execute("INSERT INTO t VALUES (4, 2, 'd', NULL), (5, 3, 'e', NULL)")
    c.execute("DELETE FROM t WHERE id = 1")
    c.execute("UPDATE t SET g = 3, s = 'bb' WHERE id = 2")
    c.execute("BEGIN")
    c.execute("DELETE FROM t WHERE g = 3")
    c.execute("INSERT INTO t VALUES (6, 4, 'f', NULL)")
    c.execute("COMMIT")
    c.execute("INSERT INTO sink_probe_t VALUES (1)")
    wait_for(lambda: all(_sink_caught_up(c, s) for s in ("kp", "ku", "kd")), timeout=60,
             what="the Kafka sinks to catch up")
    kinds = {r[0]: (r[2], r[3]) for r in c.execute("SHOW SINKS").fetchall()}
    assert kinds["ku"] == ("kafka", f"{b}/ups")

    # PLAIN: every arriving row once, keyed by id, with the sink's place in headers.
    plain = read_topic(b, "plain", 3)
    arrivals = collections.Counter()
    for part in plain.values():
        for key, value, headers in part:
            row = json.loads(value)
            assert json.loads(key) == {"id": row["id"]}
            assert {"freshet_sink", "freshet_epoch", "freshet_seq"} <= set(headers)
            arrivals[(row["id"], row["g"], row["s"])] += 1
    assert arrivals == collections.Counter([(1, 1, "a"), (2, 1, "b"), (3, 2, None), (4, 2, "d"),
                                            (5, 3, "e"), (2, 3, "bb"), (6, 4, "f")])
    ts = [json.loads(v) for part in plain.values() for _, v, _ in part if json.loads(v)["id"] == 1]
    assert ts[0]["ts"].startswith("2026-12-01T10:00:00")
    # UPSERT: the topic, compacted by key, is the view.
    view = {json.dumps({"g": g}, separators=(",", ":")).encode(): {"g": g, "n": n, "top": top}
            for g, n, top in c.execute("SELECT g, n, top FROM vg").fetchall()}
    assert upserted(read_topic(b, "ups", 4)) == view
    # DEBEZIUM: before/after/op per changed key; applying them gives the view.
    state = {}
    ops = collections.Counter()
    for part in read_topic(b, "dbz", 2).values():
        for key, value, _ in part:
            ev = json.loads(value)
            ops[ev["op"]] += 1
            if ev["after"] is None:
                assert state.pop(key)["id"] == ev["before"]["id"]
            else:
                state[key] = ev["after"]
    assert {v["id"]: v["s"] for v in state.values()} == dict(
        c.execute("SELECT id, s FROM vt").fetchall())
    assert ops == {"c": 6, "u": 1, "d": 3}
    c.execute("DROP SINK kp, ku, kd")

    # Statements sqlparser does not know, in one query string with others (psql -c sends it
    # as one simple-protocol query): each runs in turn.
    script = (f"CREATE TABLE multi (id INT PRIMARY KEY); "
              f"CREATE MATERIALIZED VIEW multi_v AS SELECT id FROM multi; "
              f"CREATE SINK multi_s FROM multi_v WITH ({kafka_with}, topic = 'ups', primary_key = 'id') "
              f"FORMAT UPSERT ENCODE JSON; INSERT INTO multi VALUES (1); SHOW SINKS")
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(freshet.port), "freshet",
                          "-v", "ON_ERROR_STOP=1", "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "multi_s" in out.stdout


def test_kafka_sink_exactly_once_under_kill9_and_outage(kafka, tmp_path):
    """Rows written while freshet is killed again and again, then while the broker is down
    for 30 s: the topic holds every arriving row exactly once."""
    kafka.create_topic("ev", 3)
    server = Freshet(tmp_path).start()
    try:
        c = server.connect()
        c.execute("CREATE TABLE ev (id BIGINT PRIMARY KEY, v INT)")
        c.execute("CREATE TABLE sink_probe_t (x INT)")
        c.execute("CREATE MATERIALIZED VIEW sink_probe AS SELECT x FROM sink_probe_t")
        c.execute("CREATE MATERIALIZED VIEW evv AS SELECT id, v FROM ev WHERE v >= 0")
        c.execute(f"CREATE SINK evs FROM evv WITH (connector = 'kafka', topic = 'ev', "
                  f"properties.bootstrap.server = '{kafka.bootstrap}') "
                  f"FORMAT PLAIN ENCODE JSON (force_append_only = 'true')")
        rng = random.Random(7)
        next_id = 0
        for _ in range(KILL_ROUNDS):
            stop = threading.Event()

            def write(start):
                conn = psycopg.connect(server.dsn(), autocommit=True)
                i = start
                try:
                    # at most 3,000 rows a round: the mock broker keeps 5 MB per partition
                    while not stop.is_set() and i < start + 3000:
                        values = ", ".join(f"({g}, {g % 7})" for g in range(i, i + 20))
                        conn.execute(f"INSERT INTO ev VALUES {values}")
                        i += 20
                except psycopg.Error:
                    pass  # killed
                return i

            # Let some messages out, then kill at a random moment (counted from before the
            # writer starts: it stops at 3,000 rows, so the target is always reachable).
            want = messages_in(kafka.bootstrap, "ev", 3) + rng.randrange(1, 200)
            t = threading.Thread(target=write, args=(next_id,))
            t.start()
            wait_for(lambda: messages_in(kafka.bootstrap, "ev", 3) >= want, timeout=60, what="messages")
            server.kill9()
            stop.set()
            t.join()
            server.start()
            c = server.connect()
            next_id = c.execute("SELECT coalesce(max(id), -1) + 1 FROM ev").fetchone()[0] + 1000
        # The broker goes away for 30 s while rows keep coming; the sink waits, then catches up.
        kafka.command("down 1")
        down_at = time.monotonic()
        for i in range(next_id, next_id + 500, 50):
            c.execute(f"INSERT INTO ev SELECT g, g % 5 FROM generate_series({i}, {i + 49}) AS s(g)")
        wait_for(lambda: "retrying" in c.execute("SELECT status FROM freshet_internal.sink_progress "
                                                 "WHERE sink = 'evs'").fetchone()[0],
                 timeout=30, what="the sink to report the outage")
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))  # the outage lasts 30 s
        kafka.command("up 1")
        c.execute("INSERT INTO sink_probe_t VALUES (1)")
        wait_for(lambda: _sink_caught_up(c, "evs"), timeout=120, what="the sink to catch up")
        got = collections.Counter()
        for part in read_topic(kafka.bootstrap, "ev", 3).values():
            for _, value, _ in part:
                row = json.loads(value)
                got[(row["id"], row["v"])] += 1
        expected = collections.Counter(tuple(r) for r in c.execute("SELECT id, v FROM evv").fetchall())
        dupes = {r: n for r, n in got.items() if n > 1}
        assert not dupes, f"rows sent twice: {list(dupes)[:5]}"
        assert got == expected, (len(got), len(expected), list(expected - got)[:5])
        assert len(expected) > 1000
    finally:
        server.stop()
