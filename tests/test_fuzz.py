"""Robustness: random bytes as SQL and as raw protocol messages never take the server down."""
import random
import socket
import struct

import psycopg


def startup_packet():
    body = struct.pack("!I", 196608) + b"user\0fuzz\0database\0freshet\0\0"
    return struct.pack("!I", len(body) + 4) + body


def read_some(sock):
    try:
        sock.settimeout(0.5)
        return sock.recv(65536)
    except (socket.timeout, ConnectionError):
        return b""


def test_random_queries_and_raw_messages(freshet):
    rng = random.Random(20261124)
    watcher = freshet.connect()
    watcher.execute("CREATE TABLE fz (x INT)")
    watcher.execute("INSERT INTO fz VALUES (1)")
    fuzzer = freshet.connect()
    for i in range(1000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        text = blob.decode("utf-8", errors="replace").replace("\0", "")
        try:
            fuzzer.execute(text)
        except psycopg.Error as e:
            assert e.sqlstate is None or e.sqlstate != "XX000", (text, e)
        if fuzzer.closed or fuzzer.broken:
            fuzzer = freshet.connect()
    # raw protocol messages after a valid startup, and garbage instead of a startup
    for i in range(1000):
        with socket.create_connection(("127.0.0.1", freshet.port), timeout=5) as s:
            if i % 2 == 0:
                s.sendall(startup_packet())
                read_some(s)
            tag = bytes([rng.choice(b"QPBDESHCXdcfp" + bytes([rng.randrange(256)]))])
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            length = len(body) + 4 if rng.random() < 0.7 else rng.randrange(0, 1 << 31)
            try:
                s.sendall(tag + struct.pack("!I", length) + body)
                read_some(s)
            except (ConnectionError, socket.timeout):
                pass
        if i % 100 == 0:
            assert freshet.alive()
            assert watcher.execute("SELECT x FROM fz").fetchall() == [(1,)]
    assert freshet.alive()
    assert watcher.execute("SELECT x FROM fz").fetchall() == [(1,)]
