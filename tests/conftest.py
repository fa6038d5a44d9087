"""Fixtures: the real freshet binary and a real PostgreSQL, both on loopback, both ours."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

FRESHET_BIN = os.environ.get("FRESHET_BIN") or str(
    Path.home() / ".cache/freshet/target/debug/freshet")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# kill -9 rounds of the crash tests: 20 in `make test`; FRESHET_KILL_ROUNDS=155 for the long run.
KILL_ROUNDS = int(os.environ.get("FRESHET_KILL_ROUNDS", "20"))


def wait_for(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


class Freshet:
    """One freshet server process over a data directory that outlives restarts."""

    def __init__(self, data_dir: Path, env=None):
        self.data_dir = data_dir
        self.proc = None
        self.port = None
        # extra environment (FRESHET_* settings) for every start
        self.env = env or {}

    def start(self):
        port_file = self.data_dir / "port"
        if port_file.exists():
            port_file.unlink()
        self.proc = subprocess.Popen(
            [FRESHET_BIN, "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir / "data"),
             "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL, stderr=open(self.data_dir / "server.log", "ab"),
            env={**os.environ, "RUST_LOG": "warn", **self.env})

        def ready():
            if self.proc.poll() is not None:
                log = (self.data_dir / "server.log").read_text()
                # The error comes first, a backtrace after it: show both ends.
                shown = log if len(log) <= 4000 else f"{log[:2000]}\n[…]\n{log[-2000:]}"
                raise RuntimeError(f"freshet exited (code {self.proc.returncode}): {shown}")
            return port_file.exists() and port_file.read_text().strip()
        self.port = int(wait_for(ready, what="freshet to listen"))
        return self

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self):
        return self.proc.poll() is None

    def dsn(self):
        return f"host=127.0.0.1 port={self.port} dbname=freshet user=tester"

    def connect(self, **kw):
        return psycopg.connect(self.dsn(), autocommit=True, **kw)


@pytest.fixture
def freshet(tmp_path):
    server = Freshet(tmp_path).start()
    yield server
    server.stop()


class Postgres:
    """A throwaway PostgreSQL cluster (Debian's binaries) in a temp dir, run as `postgres`."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="freshet-pg-"))
        self.port = None
        self.as_pg = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]

    def start(self):
        shutil.chown(self.dir, "postgres") if os.geteuid() == 0 else None
        data = self.dir / "data"
        subprocess.run(self.as_pg + [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                     "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, stdout=subprocess.DEVNULL)
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        subprocess.run(self.as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.dir / "log"),
                                     "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                                     "start"], check=True, stdout=subprocess.DEVNULL)
        return self

    def stop(self):
        subprocess.run(self.as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, **kw):
        return psycopg.connect(f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres", autocommit=True, **kw)


@pytest.fixture(scope="session")
def postgres():
    pg = Postgres().start()
    yield pg
    pg.stop()


MOCK_BIN = str(Path(FRESHET_BIN).parent / "freshet-kafka-mock")


def read_messages(bootstrap, topic, partitions):
    """Every message of `topic` as the broker holds it, per partition in offset order:
    (partition, offset, timestamp in ms, key, value, headers)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out, done = [], set()
        deadline = time.monotonic() + 60
        while len(done) < partitions:
            assert time.monotonic() < deadline, "reading the topic timed out"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                done.add(m.partition())
                continue
            out.append((m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(),
                        dict(m.headers() or [])))
        return out
    finally:
        c.close()


class KafkaMock:
    """librdkafka's mock Kafka cluster in a process of its own (`freshet-kafka-mock`): real
    Kafka protocol over loopback TCP, outliving any freshet process a test kills."""

    def __init__(self, brokers=1, proxy_port=None):
        args = [MOCK_BIN, "--brokers", str(brokers)]
        if proxy_port:
            # clients bootstrap from 127.0.0.1:proxy_port, which a replacement can take over
            args += ["--proxy-port", str(proxy_port)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "bootstrap", f"mock broker did not start: {line}"
        self.bootstrap = line[1]

    def command(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", f"{cmd}: {answer}"

    def create_topic(self, name, partitions):
        self.command(f"topic {name} {partitions}")

    def producer(self, **conf):
        from confluent_kafka import Producer
        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, **conf})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def kafka():
    k = KafkaMock()
    yield k
    k.stop()
