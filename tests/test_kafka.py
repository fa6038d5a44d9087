"""Kafka sources end to end: the real freshet binary reading a real Kafka-protocol broker
(librdkafka's mock cluster in its own process, see docs/testing.md) over loopback TCP, with
PostgreSQL as the oracle for view contents."""
import json
import random
import threading
import time
from collections import Counter

import psycopg
import pytest

from conftest import KILL_ROUNDS, Freshet, wait_for


def source_ddl(name, topic, bootstrap, startup="earliest"):
    return f"""
        CREATE SOURCE {name} (
            id BIGINT, lang VARCHAR, score DOUBLE PRECISION, retweets BIGINT, text VARCHAR,
            "user" STRUCT<id BIGINT, name VARCHAR, followers BIGINT>
        )
        INCLUDE partition AS kp, offset AS ko, timestamp AS kts, key AS kkey
        WITH (connector = 'kafka', topic = '{topic}',
              properties.bootstrap.server = '{bootstrap}',
              scan.startup.mode = '{startup}')
        FORMAT PLAIN ENCODE JSON"""


def produce(producer, topic, payload, partition, key=None, **kw):
    """Produces one message, waiting while the producer's queue is full."""
    while True:
        try:
            producer.produce(topic, value=payload, key=key, partition=partition, **kw)
            return
        except BufferError:
            producer.poll(0.01)


def send(producer, topic, messages):
    """Produces (partition, payload bytes or None, key) triples; returns their (partition,
    offset) in order."""
    where = [None] * len(messages)

    def done(i):
        def cb(err, msg):
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())
        return cb

    for i, (part, payload, key) in enumerate(messages):
        produce(producer, topic, payload, part, key, on_delivery=done(i))
    producer.flush(60)
    assert all(w is not None for w in where)
    return where


def event(rng, i):
    """A valid event: fields sometimes missing or null, unknown fields sometimes present."""
    e = {"id": i}
    if rng.random() < 0.9:
        e["lang"] = rng.choice(["en", "en", "en", "es", "fr", "ja", "pt", None])
    if rng.random() < 0.9:
        e["score"] = rng.choice([rng.randint(-50, 50), round(rng.uniform(-100, 100), 3), None])
    if rng.random() < 0.95:
        e["retweets"] = rng.choice([rng.randint(0, 100), None])
    e["text"] = rng.choice(["hello", "ünïcødé ✓", "a \"quoted\" text", "", None, f"tweet {i}"])
    if rng.random() < 0.9:
        uid = rng.randint(1, 500)
        e["user"] = {"id": uid, "name": f"user{uid}", "followers": rng.choice([uid * 10, None])}
        if rng.random() < 0.1:
            e["user"]["verified"] = True
    if rng.random() < 0.2:
        e["extra"] = {"nested": [1, 2, {"x": "y"}]}
    return e


MALFORMED = [
    b"not json at all",
    b"[1, 2, 3]",
    b'{"id": 5, "lang": "en"',
    b'{"id": "abc", "lang": "en"}',
    b'{"id": 7, "retweets": {"a": 1}}',
    b'"just a string"',
    b'{"id": 1}{"id": 2}',
    b'{"id": 8, "user": 5}',
    b'{"id": 9, "score": "high"}',
    b"",
    None,
]


def row_of(e, part, off):
    u = e.get("user") or {}
    return (e["id"], e.get("lang"), e.get("score"), e.get("retweets"), e.get("text"),
            u.get("id"), u.get("name"), u.get("followers"), part, off)


# (freshet view query, the same over PostgreSQL's `events` table)
VIEWS = [
    ('SELECT id, ("user").name AS name, text FROM ev',
     "SELECT id, user_name, text FROM events"),
    ("SELECT lang, count(*) AS n, sum(retweets) AS r, min(score) AS lo, max(score) AS hi FROM ev GROUP BY lang",
     "SELECT lang, count(*), sum(retweets), min(score), max(score) FROM events GROUP BY lang"),
    ('SELECT ("user").id AS uid, count(*) AS n, max(("user").followers) AS f FROM ev GROUP BY 1 HAVING count(*) > 150',
     "SELECT user_id, count(*), max(followers) FROM events GROUP BY 1 HAVING count(*) > 150"),
    ("SELECT kp, count(*) AS n, count(lang) AS nl, count(DISTINCT lang) AS dl, max(ko) AS last FROM ev GROUP BY kp",
     "SELECT kp, count(*), count(lang), count(DISTINCT lang), max(ko) FROM events GROUP BY kp"),
    ("SELECT id, lang FROM ev WHERE retweets > 90 AND lang IS NOT NULL",
     "SELECT id, lang FROM events WHERE retweets > 90 AND lang IS NOT NULL"),
    ("SELECT l.name, count(*) AS n FROM ev JOIN langs l ON ev.lang = l.code GROUP BY l.name",
     "SELECT l.name, count(*) FROM events JOIN langs l ON events.lang = l.code GROUP BY l.name"),
    ("SELECT count(*) AS n, sum(id) AS s FROM ev WHERE text LIKE '%e%'",
     "SELECT count(*), sum(id) FROM events WHERE text LIKE '%e%'"),
]


def normalize(rows):
    out = []
    for r in rows:
        out.append(tuple(round(v, 6) if isinstance(v, float) else (int(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, (int, float)) else v) for v in r))
    return Counter(out)


def test_malformed_messages_are_recorded_and_views_match_postgres(kafka, freshet, postgres):
    """Acceptance 2: 100k messages over 3 partitions, 1% malformed: every view equals
    PostgreSQL's result over the valid rows, every malformed message is in source_errors."""
    rng = random.Random(42)
    kafka.create_topic("events", 3)
    producer = kafka.producer()
    total = 100_000
    messages, kinds = [], []
    for i in range(total):
        if i % 100 == 37:
            messages.append((i % 3, MALFORMED[(i // 100) % len(MALFORMED)], None))
            kinds.append(None)
        else:
            e = event(rng, i)
            messages.append((i % 3, json.dumps(e).encode(), str(i).encode()))
            kinds.append(e)

    conn = freshet.connect()
    conn.execute(source_ddl("ev", "events", kafka.bootstrap))
    conn.execute("CREATE TABLE langs (code TEXT PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO langs VALUES ('en','English'),('es','Spanish'),('fr','French'),('de','German')")
    half = len(VIEWS) // 2
    # Half the views exist before any message arrives, half are backfilled mid-stream.
    for n, (q, _) in enumerate(VIEWS[:half]):
        conn.execute(f"CREATE MATERIALIZED VIEW v{n} AS {q}")
    where = send(producer, "events", messages[: total // 2])
    conn.execute("FLUSH")
    for n, (q, _) in enumerate(VIEWS[half:], start=half):
        conn.execute(f"CREATE MATERIALIZED VIEW v{n} AS {q}")
    where += send(producer, "events", messages[total // 2:])
    conn.execute("FLUSH")

    pg = postgres.connect()
    pg.execute("DROP TABLE IF EXISTS events, langs")
    pg.execute("""CREATE TABLE events (id bigint, lang text, score float8, retweets bigint,
                  text text, user_id bigint, user_name text, followers bigint, kp int, ko bigint)""")
    pg.execute("CREATE TABLE langs (code text primary key, name text)")
    pg.execute("INSERT INTO langs VALUES ('en','English'),('es','Spanish'),('fr','French'),('de','German')")
    with pg.cursor().copy("COPY events FROM STDIN") as cp:
        for e, (part, off) in zip(kinds, where):
            if e is not None:
                cp.write_row(row_of(e, part, off))

    for n, (_, pq) in enumerate(VIEWS):
        got = normalize(conn.execute(f"SELECT * FROM v{n}").fetchall())
        want = normalize(pg.execute(pq).fetchall())
        assert got == want, f"view v{n} ({VIEWS[n][0]}) differs from PostgreSQL"

    bad = {w for e, w in zip(kinds, where) if e is None}
    recorded = conn.execute(
        'SELECT partition, "offset", error, payload FROM freshet_internal.source_errors WHERE source = \'ev\'').fetchall()
    assert {(p, o) for p, o, _, _ in recorded} == bad
    assert len(recorded) == len(bad) == total // 100
    assert all(err for _, _, err, _ in recorded)
    assert any(payload == "not json at all" for _, _, _, payload in recorded)
    show = conn.execute("SHOW SOURCES").fetchall()
    assert [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in show] == [
        ("ev", "events", "3", "0", str(total // 100), "running")]
    # An ad-hoc SELECT over the source re-reads what it has committed.
    assert conn.execute("SELECT count(*), sum(id) FROM ev").fetchone() == (
        total - len(bad), sum(e["id"] for e in kinds if e is not None))


def test_sources_joins_restart_and_ddl(kafka, tmp_path):
    """Views over sources, a source joined with a table and with another source, views over
    views, restart resuming from committed offsets, `latest` startup, DROP SOURCE."""
    kafka.create_topic("ev", 2)
    kafka.create_topic("users", 1)
    producer = kafka.producer()
    server = Freshet(tmp_path).start()
    try:
        conn = server.connect()
        conn.execute(source_ddl("ev", "ev", kafka.bootstrap))
        conn.execute(f"""CREATE SOURCE users (uid BIGINT, country VARCHAR)
                         WITH (connector = 'kafka', topic = 'users',
                               properties.bootstrap.server = '{kafka.bootstrap}')
                         FORMAT JSON""")
        conn.execute("CREATE TABLE langs (code TEXT PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO langs VALUES ('en','English'),('fr','French')")
        conn.execute("""CREATE MATERIALIZED VIEW by_country AS
                        SELECT u.country, count(*) AS n FROM ev JOIN users u ON ("ev"."user").id = u.uid
                        GROUP BY u.country""")
        conn.execute("""CREATE MATERIALIZED VIEW by_lang AS
                        SELECT l.name, count(*) AS n FROM ev JOIN langs l ON ev.lang = l.code GROUP BY l.name""")
        conn.execute("CREATE MATERIALIZED VIEW english AS SELECT n FROM by_lang WHERE name = 'English'")
        send(producer, "users", [(0, json.dumps({"uid": u, "country": "c%d" % (u % 3)}).encode(), None)
                                 for u in range(1, 11)])
        evs = [{"id": i, "lang": ["en", "fr", "xx"][i % 3], "user": {"id": i % 12 + 1}} for i in range(600)]
        send(producer, "ev", [(i % 2, json.dumps(e).encode(), None) for i, e in enumerate(evs)])
        conn.execute("FLUSH")

        def expected(evs):
            c = Counter("c%d" % (e["user"]["id"] % 3) for e in evs if e["user"]["id"] <= 10)
            lang = Counter({"en": "English", "fr": "French"}[e["lang"]] for e in evs if e["lang"] != "xx")
            return c, lang

        def check(evs):
            c, lang = expected(evs)
            assert dict(conn.execute("SELECT * FROM by_country").fetchall()) == c
            assert dict(conn.execute("SELECT * FROM by_lang").fetchall()) == lang
            assert conn.execute("SELECT n FROM english").fetchall() == [(lang["English"],)]

        check(evs)
        server.stop()
        more = [{"id": i, "lang": ["en", "fr", "xx"][i % 3], "user": {"id": i % 12 + 1}} for i in range(600, 900)]
        send(producer, "ev", [(i % 2, json.dumps(e).encode(), None) for i, e in enumerate(more)])
        server.start()
        conn = server.connect()
        conn.execute("FLUSH")
        check(evs + more)
        # Starting at `latest` skips what is in the topic already.
        conn.execute(source_ddl("ev_new", "ev", kafka.bootstrap, startup="latest"))
        conn.execute("CREATE MATERIALIZED VIEW new_count AS SELECT count(*) AS n FROM ev_new")
        send(producer, "ev", [(0, json.dumps({"id": 5000 + i}).encode(), None) for i in range(7)])
        conn.execute("FLUSH")
        assert conn.execute("SELECT n FROM new_count").fetchone() == (7,)
        progress = conn.execute(
            "SELECT partition, \"offset\", high_watermark, lag FROM freshet_internal.source_progress "
            "WHERE source = 'ev' ORDER BY partition").fetchall()
        assert [(p, lag) for p, _, _, lag in progress] == [(0, 0), (1, 0)]
        assert sum(o for _, o, _, _ in progress) == 900 + 7

        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            conn.execute("DROP SOURCE ev")
        with pytest.raises(psycopg.errors.DuplicateTable):
            conn.execute(source_ddl("langs", "ev", kafka.bootstrap))
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("CREATE MATERIALIZED VIEW nested AS SELECT \"user\" FROM ev")
        conn.execute("DROP SOURCE ev CASCADE")
        assert [r[0] for r in conn.execute("SHOW MATERIALIZED VIEWS").fetchall()] == ["new_count"]
        assert [r[0] for r in conn.execute("SHOW SOURCES").fetchall()] == ["users", "ev_new"]
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM ev")
        conn.execute("DROP SOURCE IF EXISTS ev")
    finally:
        server.stop()


def test_create_source_errors(kafka, freshet):
    conn = freshet.connect()
    with pytest.raises(psycopg.errors.SqlclientUnableToEstablishSqlconnection):
        conn.execute(source_ddl("x", "nope", "127.0.0.1:1"))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("CREATE SOURCE x (a INT) WITH (connector = 'kafka') FORMAT JSON")
    with pytest.raises(psycopg.errors.SyntaxError):
        conn.execute("CREATE SOURCE x (a INT) WITH (connector = 'kafka', topic = 't')")
    kafka.create_topic("t", 1)
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute(f"""CREATE SOURCE x (a STRUCT<b JSONB>) WITH (connector = 'kafka', topic = 't',
                         properties.bootstrap.server = '{kafka.bootstrap}') FORMAT JSON""")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute(f"""CREATE SOURCE x (a INT, b STRUCT<c INT>) WITH (connector = 'kafka', topic = 't',
                         properties.bootstrap.server = '{kafka.bootstrap}') FORMAT PLAIN ENCODE CSV""")
    assert conn.execute("SHOW SOURCES").fetchall() == []


def test_jsonb_column_takes_any_json_value(kafka, freshet):
    kafka.create_topic("docs", 1)
    conn = freshet.connect()
    conn.execute(f"""CREATE SOURCE docs (id BIGINT, doc JSONB)
                     WITH (connector = 'kafka', topic = 'docs',
                           properties.bootstrap.server = '{kafka.bootstrap}') FORMAT JSON""")
    conn.execute("CREATE MATERIALIZED VIEW dv AS SELECT id, doc FROM docs")
    values = [{"a": [1, {"b": None}], "c": "x"}, "text", 3.5, [1, 2], True, None]
    send(kafka.producer(), "docs", [(0, json.dumps({"id": i, "doc": v}).encode(), None)
                                    for i, v in enumerate(values)] + [(0, b'{"id": 99}', None)])
    conn.execute("FLUSH")
    # psycopg parses jsonb values; JSON null and a missing field are both SQL NULL.
    rows = dict(conn.execute("SELECT id, doc FROM dv").fetchall())
    assert rows == {**{i: v for i, v in enumerate(values)}, 99: None}


def produce_in_background(kafka, topic, ids, partitions, every_bad=0):
    """Produces one message per id (every `every_bad`-th malformed) from a thread."""
    producer = kafka.producer()
    bad = []

    def run():
        for i in ids:
            malformed = every_bad and i % every_bad == 0
            payload = b"{broken" if malformed else json.dumps({"id": i, "lang": "l%d" % (i % 5)}).encode()
            produce(producer, topic, payload, i % partitions)
            if malformed:
                bad.append(i)
            if i % 200 == 0:
                producer.poll(0)
                time.sleep(0.1)  # pace the stream (~15 s) so kills land mid-ingest
        producer.flush(60)

    t = threading.Thread(target=run)
    t.start()
    return t, bad


def test_kill9_during_ingest_loses_and_duplicates_nothing(kafka, tmp_path):
    """Acceptance 3: kill -9 at random moments during ingest, 20 rounds; afterwards every
    message is counted exactly once, and the maintained views equal fresh backfills."""
    rng = random.Random(7)
    kafka.create_topic("stream", 3)
    total = 30_000
    server = Freshet(tmp_path).start()
    conn = server.connect()
    conn.execute(f"""CREATE SOURCE s (id BIGINT, lang VARCHAR) INCLUDE offset AS ko
                     WITH (connector = 'kafka', topic = 'stream',
                           properties.bootstrap.server = '{kafka.bootstrap}') FORMAT JSON""")
    conn.execute("CREATE MATERIALIZED VIEW counts AS SELECT lang, count(*) AS n, sum(id) AS s FROM s GROUP BY lang")
    conn.execute("CREATE MATERIALIZED VIEW ids AS SELECT id, count(*) AS c FROM s GROUP BY id")
    conn.close()
    producer, bad = produce_in_background(kafka, "stream", range(1, total + 1), 3, every_bad=101)
    try:
        for _ in range(KILL_ROUNDS):
            time.sleep(rng.uniform(0.05, 0.5))
            server.kill9()
            server.start()
        producer.join()
        conn = server.connect()
        conn.execute("FLUSH")
        good = [i for i in range(1, total + 1) if i % 101 != 0]
        assert conn.execute("SELECT count(*), sum(c), min(c), max(c), sum(id) FROM ids").fetchone() == (
            len(good), len(good), 1, 1, sum(good))
        want = Counter()
        sums = Counter()
        for i in good:
            want["l%d" % (i % 5)] += 1
            sums["l%d" % (i % 5)] += i
        got = {lang: (n, s) for lang, n, s in conn.execute("SELECT lang, n, s FROM counts").fetchall()}
        assert got == {lang: (want[lang], sums[lang]) for lang in want}
        errors = conn.execute("SELECT count(*), count(DISTINCT (partition, \"offset\")) FROM freshet_internal.source_errors").fetchone()
        assert errors == (len(bad), len(bad))
        # A view created now backfills from the topic: it must agree with the one that lived
        # through the kills.
        conn.execute("CREATE MATERIALIZED VIEW counts2 AS SELECT lang, count(*) AS n, sum(id) AS s FROM s GROUP BY lang")
        assert sorted(conn.execute("SELECT * FROM counts2").fetchall()) == sorted(
            conn.execute("SELECT * FROM counts").fetchall())
    finally:
        producer.join()
        server.stop()


def test_broker_outage_is_visible_and_loses_nothing(kafka, freshet):
    """Acceptance 4: the broker goes down for 30 s mid-stream; the source reports it, then
    resumes when it returns, with nothing lost or doubled."""
    kafka.create_topic("out", 2)
    producer = kafka.producer(**{"message.timeout.ms": 120_000})
    conn = freshet.connect()
    conn.execute(f"""CREATE SOURCE o (id BIGINT)
                     WITH (connector = 'kafka', topic = 'out',
                           properties.bootstrap.server = '{kafka.bootstrap}') FORMAT JSON""")
    conn.execute("CREATE MATERIALIZED VIEW oc AS SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s FROM o")
    send(producer, "out", [(i % 2, json.dumps({"id": i}).encode(), None) for i in range(5000)])
    conn.execute("FLUSH")
    assert conn.execute("SELECT * FROM oc").fetchone() == (5000, 5000, sum(range(5000)))

    kafka.command("down 1")
    down_at = time.monotonic()
    status = wait_for(lambda: [r for r in conn.execute("SHOW SOURCES").fetchall()
                               if "unreachable" in r[6]], timeout=30, what="outage in SHOW SOURCES")
    assert status[0][0] == "o"
    progress = conn.execute("SELECT DISTINCT status FROM freshet_internal.source_progress").fetchall()
    assert len(progress) == 1 and "unreachable" in progress[0][0]
    # Produced while the broker is down: the producer holds them until it returns.
    for i in range(5000, 8000):
        producer.produce("out", value=json.dumps({"id": i}).encode(), partition=i % 2)
    producer.poll(0)
    time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))  # the outage lasts 30 s
    kafka.command("up 1")
    assert producer.flush(60) == 0
    wait_for(lambda: conn.execute("SHOW SOURCES").fetchone()[6] == "running", timeout=60,
             what="the source to report running again")
    conn.execute("FLUSH")
    assert conn.execute("SELECT * FROM oc").fetchone() == (8000, 8000, sum(range(8000)))


def test_only_columns_views_read_are_checked_and_views_agree(kafka, freshet):
    """Fields no view reads are not decoded (nor type-checked); a later view reading them sees
    NULL where they do not convert, and every view keeps the same set of messages."""
    kafka.create_topic("cols", 1)
    conn = freshet.connect()
    conn.execute(f"""CREATE SOURCE cols (id BIGINT, a BIGINT, b BIGINT)
                     WITH (connector = 'kafka', topic = 'cols',
                           properties.bootstrap.server = '{kafka.bootstrap}') FORMAT JSON""")
    conn.execute("CREATE MATERIALIZED VIEW va AS SELECT id, a FROM cols")
    p = kafka.producer()
    send(p, "cols", [(0, b'{"id": 1, "a": 1, "b": "x"}', None),     # b unread: accepted
                     (0, b'{"id": 2, "a": "y", "b": 2}', None)])    # a read by va: rejected
    conn.execute("FLUSH")
    conn.execute("CREATE MATERIALIZED VIEW vb AS SELECT id, b FROM cols")
    assert conn.execute("SELECT * FROM vb").fetchall() == [(1, None)]
    send(p, "cols", [(0, b'{"id": 3, "a": 3, "b": "z"}', None),     # b read by vb now: rejected
                     (0, b'{"id": 4, "a": 4, "b": 4}', None)])
    conn.execute("FLUSH")
    assert sorted(conn.execute("SELECT * FROM va").fetchall()) == [(1, 1), (4, 4)]
    assert sorted(conn.execute("SELECT * FROM vb").fetchall()) == [(1, None), (4, 4)]
    assert sorted(conn.execute("SELECT id, a, b FROM cols").fetchall()) == [(1, 1, None), (4, 4, 4)]
    assert [r[0] for r in conn.execute(
        'SELECT "offset" FROM freshet_internal.source_errors ORDER BY 1').fetchall()] == [1, 2]
    conn.execute("DROP MATERIALIZED VIEW vb")
    send(p, "cols", [(0, b'{"id": 5, "a": 5, "b": "w"}', None)])    # b unread again: accepted
    conn.execute("FLUSH")
    assert sorted(conn.execute("SELECT * FROM va").fetchall()) == [(1, 1), (4, 4), (5, 5)]


def test_backfill_refuses_when_retention_removed_consumed_messages(kafka, freshet):
    """A view over a source re-reads what the source consumed; when the topic no longer holds
    it (the mock broker keeps ~5 MB per partition), the view is refused (55000), never built
    from part of the data. Views that existed all along are complete."""
    kafka.create_topic("big", 1)
    conn = freshet.connect()
    conn.execute(f"""CREATE SOURCE big (id BIGINT, pad VARCHAR)
                     WITH (connector = 'kafka', topic = 'big',
                           properties.bootstrap.server = '{kafka.bootstrap}') FORMAT JSON""")
    conn.execute("CREATE MATERIALIZED VIEW early AS SELECT count(*) AS n FROM big")
    pad = "x" * 2000
    p = kafka.producer()
    for chunk in range(4):
        send(p, "big", [(0, json.dumps({"id": i, "pad": pad}).encode(), None)
                        for i in range(chunk * 1000, (chunk + 1) * 1000)])
        conn.execute("FLUSH")
    assert conn.execute("SELECT n FROM early").fetchone() == (4000,)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("CREATE MATERIALIZED VIEW late AS SELECT count(*) AS n FROM big")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT count(*) FROM big")


def test_view_created_mid_stream_reads_its_columns_in_every_row(kafka, freshet):
    """Batches decoded (for the old views' columns) before a new view existed are decoded again
    when they commit: the new view never sees a NULL for a column it reads."""
    kafka.create_topic("mid", 2)
    conn = freshet.connect()
    conn.execute(f"""CREATE SOURCE mid (id BIGINT, a BIGINT, b VARCHAR)
                     WITH (connector = 'kafka', topic = 'mid',
                           properties.bootstrap.server = '{kafka.bootstrap}') FORMAT JSON""")
    conn.execute("CREATE MATERIALIZED VIEW ma AS SELECT id, a FROM mid")
    total = 20_000
    producer = kafka.producer()
    stop = threading.Event()

    def run():
        for i in range(total):
            produce(producer, "mid", json.dumps({"id": i, "a": i, "b": f"b{i}"}).encode(), i % 2)
            if i % 500 == 0:
                producer.poll(0)
                time.sleep(0.05)  # a ~2 s stream: the view is created while batches are in flight
        producer.flush(60)

    t = threading.Thread(target=run)
    t.start()
    try:
        time.sleep(0.3)  # let the stream start, so the view is created mid-stream
        conn.execute("CREATE MATERIALIZED VIEW mb AS SELECT id, b FROM mid")
    finally:
        t.join()
    conn.execute("FLUSH")
    assert conn.execute("SELECT count(*), count(b), count(DISTINCT id) FROM mb").fetchone() == (total, total, total)
    assert conn.execute("SELECT count(*) FROM mb WHERE b <> 'b' || CAST(id AS TEXT)").fetchone() == (0,)
    assert conn.execute("SELECT count(*), count(a) FROM ma").fetchone() == (total, total)


def test_csv_source(kafka, freshet):
    """ENCODE CSV: each line of a message is a row, a header line per message is skipped when
    declared, malformed messages are recorded."""
    kafka.create_topic("csv", 2)
    conn = freshet.connect()
    conn.execute(f"""CREATE SOURCE c (id BIGINT, city VARCHAR, temp DOUBLE PRECISION)
                     INCLUDE partition AS kp
                     WITH (connector = 'kafka', topic = 'csv',
                           properties.bootstrap.server = '{kafka.bootstrap}')
                     FORMAT PLAIN ENCODE CSV (delimiter = ';', without_header = 'false')""")
    conn.execute("CREATE MATERIALIZED VIEW by_city AS SELECT city, count(*) AS n, max(temp) AS hi FROM c GROUP BY city")
    msgs = []
    for i in range(300):
        lines = "\n".join(f"{i * 3 + k};{['Lisbon', 'Osaka', 'Lagos'][k]};{i % 40 + k / 2}" for k in range(3))
        msgs.append((i % 2, f"id;city;temp\n{lines}".encode(), None))
    msgs.append((0, b"id;city;temp\n7;Oslo;warm", None))  # temp is read by the view
    msgs.append((1, b"id;city;temp\n5;Oslo", None))
    send(kafka.producer(), "csv", msgs)
    conn.execute("FLUSH")
    assert sorted(conn.execute("SELECT * FROM by_city").fetchall()) == [
        ("Lagos", 300, 40.0), ("Lisbon", 300, 39.0), ("Osaka", 300, 39.5)]
    assert conn.execute("SELECT count(*) FROM freshet_internal.source_errors").fetchone() == (2,)
    assert conn.execute("SELECT count(*), count(DISTINCT kp) FROM c").fetchone() == (900, 2)


def test_a_row_a_view_cannot_evaluate_is_recorded_and_the_source_goes_on(kafka, freshet):
    kafka.create_topic("bad_rows", 2)
    c = freshet.connect()
    c.execute(source_ddl("ev", "bad_rows", kafka.bootstrap))
    c.execute("CREATE MATERIALIZED VIEW ratio AS SELECT id, 1000 / retweets AS r FROM ev")
    c.execute("CREATE MATERIALIZED VIEW ratio_sum AS SELECT lang, sum(100 / retweets) AS s, count(*) AS n FROM ev GROUP BY lang")
    c.execute("CREATE MATERIALIZED VIEW everything AS SELECT count(*) AS n FROM ev")
    msgs = [(i % 2, json.dumps({"id": i, "lang": "en", "retweets": 0 if i == 7 else i + 1}).encode(), None)
            for i in range(50)]
    send(kafka.producer(), "bad_rows", msgs)
    c.execute("FLUSH")
    # The other views are complete; the failing ones lack only the bad row.
    assert c.execute("SELECT n FROM everything").fetchone() == (50,)
    assert c.execute("SELECT count(*) FROM ratio").fetchone() == (49,)
    assert c.execute("SELECT n FROM ratio_sum").fetchone() == (49,)
    errs = c.execute("SELECT view, error, row, weight FROM freshet_internal.view_errors ORDER BY view").fetchall()
    assert [e[0] for e in errs] == ["ratio", "ratio_sum"], errs
    assert all("zero" in e[1].lower() and e[3] == 1 for e in errs), errs
    assert "7" in errs[0][2]
    # The source never stalled.
    status = c.execute("SELECT DISTINCT status FROM freshet_internal.source_progress WHERE source = 'ev'").fetchall()
    assert status == [("running",)], status
    # More messages flow through.
    send(kafka.producer(), "bad_rows", [(0, json.dumps({"id": 100, "retweets": 4}).encode(), None)])
    c.execute("FLUSH")
    assert c.execute("SELECT r FROM ratio WHERE id = 100").fetchone() == (250,)


def test_subscribe_to_a_source(kafka, freshet):
    """SUBSCRIBE to a source: its committed rows as the snapshot (re-read from the topic), then
    each batch it ingests — every column, also those no view reads."""
    kafka.create_topic("subs", 2)
    producer = kafka.producer()
    c = freshet.connect()
    c.execute(source_ddl("nested", "subs", kafka.bootstrap))
    with pytest.raises(psycopg.errors.FeatureNotSupported):  # its "user" column is a STRUCT
        c.execute("SUBSCRIBE nested")
    c.execute(f"""CREATE SOURCE ss (id BIGINT, lang VARCHAR, text VARCHAR)
                  INCLUDE partition AS kp, offset AS ko
                  WITH (connector = 'kafka', topic = 'subs',
                        properties.bootstrap.server = '{kafka.bootstrap}') FORMAT PLAIN ENCODE JSON""")
    c.execute("CREATE MATERIALIZED VIEW ss_ids AS SELECT id FROM ss")  # reads one column only
    first = [(i % 2, json.dumps({"id": i, "lang": "en", "text": f"t{i}"}).encode(), None)
             for i in range(10)]
    send(producer, "subs", first)
    c.execute("FLUSH")
    sub = freshet.connect()
    with sub.transaction():
        sub.execute("DECLARE s CURSOR FOR SUBSCRIBE ss")
        cur = sub.execute("FETCH ALL s WITH (timeout = '10s')")
        names = [d.name for d in cur.description]
        assert names[:3] == ["freshet_epoch", "freshet_diff", "id"]
        at = {n: i for i, n in enumerate(names)}
        snap = cur.fetchall()
        assert sorted((r[at["id"]], r[at["text"]], r[at["freshet_diff"]]) for r in snap) == \
            [(i, f"t{i}", 1) for i in range(10)]
        more = [(i % 2, json.dumps({"id": i, "lang": "fr", "text": f"t{i}"}).encode(), None)
                for i in range(10, 25)]
        send(producer, "subs", more)
        c.execute("FLUSH")
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 15 and time.monotonic() < deadline:
            got += sub.execute("FETCH ALL s WITH (timeout = '5s')").fetchall()
        assert sorted((r[at["id"]], r[at["lang"]], r[at["text"]], r[at["freshet_diff"]]) for r in got) == \
            [(i, "fr", f"t{i}", 1) for i in range(10, 25)]
        assert all(r[0] > snap[0][0] for r in got)
    # Without subscribers the view still reads its column, and nothing was lost.
    send(producer, "subs", [(0, json.dumps({"id": 99}).encode(), None)])
    c.execute("FLUSH")
    assert c.execute("SELECT count(*), sum(id) FROM ss_ids").fetchone() == (26, sum(range(25)) + 99)
