"""A source's offsets against a topic that changed under it: retention deleting messages
before they were read (a recorded, counted gap; reading goes on after it), and a topic reset
(the broker replaced, the topic recreated: the source halts, its views stay as they were, and
restarts add nothing until ALTER SOURCE … RESET)."""
import json
import socket
from datetime import datetime

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import Freshet, KafkaMock, wait_for
from test_kafka import send


def low_watermark(bootstrap, topic, partition):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def source(conn, name, topic, bootstrap):
    conn.execute(f"""CREATE SOURCE {name} (id BIGINT, pad VARCHAR)
                     WITH (connector = 'kafka', topic = '{topic}',
                           properties.bootstrap.server = '{bootstrap}') FORMAT JSON""")
    conn.execute(f"CREATE MATERIALIZED VIEW {name}_n AS SELECT count(*) AS n, sum(id) AS s FROM {name}")


def test_retention_gap_is_recorded_and_reading_goes_on(kafka, tmp_path):
    """The mock broker keeps ~5 MB per partition: messages produced while freshet is down push
    the ones it has not read out of the log. At restart the source records the gap (partition,
    first and last missing offset), counts it, and reads on from the log start."""
    kafka.create_topic("g", 1)
    server = Freshet(tmp_path).start()
    try:
        conn = server.connect()
        source(conn, "g", "g", kafka.bootstrap)
        pad = "x" * 2000
        p = kafka.producer()
        send(p, "g", [(0, json.dumps({"id": i, "pad": pad}).encode(), None) for i in range(500)])
        conn.execute("FLUSH")
        assert conn.execute("SELECT n FROM g_n").fetchone() == (500,)
        conn.close()
        server.stop()
        for chunk in range(5):
            send(p, "g", [(0, json.dumps({"id": i, "pad": pad}).encode(), None)
                          for i in range(500 + chunk * 1000, 500 + (chunk + 1) * 1000)])
        low, high = low_watermark(kafka.bootstrap, "g", 0)
        assert 500 < low < high == 5500, (low, high)
        for restart in range(2):
            server.start()
            conn = server.connect()
            conn.execute("FLUSH")
            assert conn.execute(
                "SELECT source, partition, first_offset, last_offset, missing FROM freshet_internal.source_gaps"
            ).fetchall() == [("g", 0, 500, low - 1, low - 500)]
            assert conn.execute("SELECT n, s FROM g_n").fetchone() == (
                500 + high - low, sum(range(500)) + sum(range(low, high)))
            show = conn.execute("SHOW SOURCES").fetchone()
            assert (show[6], show[7]) == ("running", "1"), show
            conn.close()
            server.stop()
    finally:
        server.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_topic_reset_halts_the_source_until_reset(tmp_path):
    """The broker is replaced by an empty one (same address) and the topic recreated with fewer
    messages than the source has read: the source halts naming the partition and both offsets,
    views keep their contents, FLUSH does not wait for it, restarts read nothing; ALTER SOURCE
    … RESET reads the new topic from its start."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = KafkaMock(proxy_port=port)
    server = Freshet(tmp_path).start()
    try:
        broker.create_topic("r", 2)
        conn = server.connect()
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("ALTER SOURCE nope RESET")
        source(conn, "r", "r", bootstrap)
        send(broker.producer(), "r", [(i % 2, json.dumps({"id": i}).encode(), None) for i in range(300)])
        conn.execute("FLUSH")
        assert conn.execute("SELECT n, s FROM r_n").fetchone() == (300, sum(range(300)))
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("ALTER SOURCE r RESET")  # not halted: it would read everything twice

        broker.stop()
        broker = KafkaMock(proxy_port=port)
        broker.create_topic("r", 2)
        send(broker.producer(), "r", [(i % 2, json.dumps({"id": 1000 + i}).encode(), None)
                                      for i in range(50)])
        status = wait_for(lambda: conn.execute("SHOW SOURCES").fetchone()[6].startswith("halted")
                          and conn.execute("SHOW SOURCES").fetchone()[6], timeout=60,
                          what="the source to halt")
        assert "150" in status and "25" in status, status  # the offset read up to, the log end
        conn.execute("FLUSH")
        assert conn.execute("SELECT n, s FROM r_n").fetchone() == (300, sum(range(300)))
        conn.close()
        for restart in range(2):
            server.stop()
            server.start()
            conn = server.connect()
            conn.execute("FLUSH")
            assert conn.execute("SHOW SOURCES").fetchone()[6].startswith("halted")
            assert conn.execute("SELECT n, s FROM r_n").fetchone() == (300, sum(range(300)))
            conn.close()

        conn = server.connect()
        conn.execute("ALTER SOURCE r RESET")
        conn.execute("FLUSH")
        assert conn.execute("SHOW SOURCES").fetchone()[6] == "running"
        assert conn.execute("SELECT n, s FROM r_n").fetchone() == (
            350, sum(range(300)) + sum(range(1000, 1050)))
        server.stop()
        server.start()
        conn = server.connect()
        conn.execute("FLUSH")
        assert conn.execute("SELECT n, s FROM r_n").fetchone() == (
            350, sum(range(300)) + sum(range(1000, 1050)))
    finally:
        server.stop()
        broker.stop()


def test_json_numbers_convert_exactly_or_are_recorded(kafka, freshet):
    """A number that does not fit its column exactly is the message's error, never a truncated,
    clamped or infinite value; numbers for TIMESTAMP columns are Unix time in the source's
    unit (seconds unless set)."""
    kafka.create_topic("nums", 1)
    conn = freshet.connect()
    for name, unit in [("secs", None), ("millis", "milliseconds")]:
        extra = f", timestamp.unit = '{unit}'" if unit else ""
        conn.execute(f"""CREATE SOURCE {name} (id BIGINT, n BIGINT, i INT, d DOUBLE PRECISION, ts TIMESTAMP)
                         WITH (connector = 'kafka', topic = 'nums',
                               properties.bootstrap.server = '{kafka.bootstrap}'{extra}) FORMAT JSON""")
        conn.execute(f"CREATE MATERIALIZED VIEW {name}_v AS SELECT id, n, i, d, ts FROM {name}")
    good = [
        {"id": 1, "n": 42, "i": 7, "d": 1.5, "ts": 1700000000},
        {"id": 2, "n": 1.0, "i": 1e3, "d": -2.5e300, "ts": 1700000000.25},
        {"id": 3, "n": -9223372036854775808, "i": -2147483648, "d": 0},
    ]
    bad = [
        '{"id": 10, "n": 1000037.5}',
        '{"id": 11, "n": -9223372036854775809}',
        '{"id": 12, "n": 9223372036854775808}',
        '{"id": 13, "i": 2147483648}',
        '{"id": 14, "d": 1e400}',
        '{"id": 15, "n": 1e-2}',
    ]
    send(kafka.producer(), "nums", [(0, json.dumps(m).encode(), None) for m in good]
         + [(0, b.encode(), None) for b in bad])
    conn.execute("FLUSH")
    rows = conn.execute("SELECT id, n, i, d, ts FROM secs_v ORDER BY id").fetchall()
    assert rows == [
        (1, 42, 7, 1.5, datetime(2023, 11, 14, 22, 13, 20)),
        (2, 1, 1000, -2.5e300, datetime(2023, 11, 14, 22, 13, 20, 250000)),
        (3, -9223372036854775808, -2147483648, 0.0, None),
    ], rows
    millis = conn.execute("SELECT ts FROM millis_v WHERE id = 1").fetchone()
    assert millis == (datetime(1970, 1, 20, 16, 13, 20),), millis
    errors = conn.execute("""SELECT "offset", error FROM freshet_internal.source_errors
                             WHERE source = 'secs' ORDER BY "offset" """).fetchall()
    assert [o for o, _ in errors] == list(range(3, 9)), errors
    assert "not an integer" in errors[0][1] and "out of range" in errors[1][1], errors
    assert "double precision" in errors[4][1], errors
