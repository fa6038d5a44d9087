"""Peak memory growth and wall time of memory-hungry statements under a statement limit, on a
release build (the figures of docs/design/20261203_statement_memory.md).
usage: statement_memory.py LIMIT_MIB [ROUNDS] [name,name,…]; FRESHET_BIN overrides the binary."""
import os, sys, time, tempfile, subprocess
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("FRESHET_BIN", str(Path.home() / ".cache/freshet/target/release/freshet"))
import conftest
conftest.FRESHET_BIN = os.environ["FRESHET_BIN"]
from conftest import Freshet
import psycopg

limit = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
Q = {
 "string_agg": "SELECT length(string_agg(repeat('x', 2000), ',')) FROM generate_series(1, 320000)",
 "array_agg": "SELECT cardinality(array_agg(repeat('q', 100) || x::text)) FROM generate_series(1, 6000000) AS g(x)",
 "distinct": "SELECT count(DISTINCT repeat('z', 50) || x::text) FROM generate_series(1, 6000000) AS g(x)",
 "sort": """SELECT max(r), min(x) FROM (SELECT x, row_number() OVER (ORDER BY p || x::text DESC) AS r
            FROM (SELECT x, repeat('y', 100) AS p FROM generate_series(1, 6000000) AS g(x)) s) w""",
 "speed1": "SELECT sum(length(repeat('y',100)||x::text)) FROM generate_series(1, 20000000) AS g(x)",
 "speed2": "SELECT count(*), sum(x % 7) FROM generate_series(1, 50000000) AS g(x) WHERE x % 3 = 1",
 "speed3": "SELECT x % 1000 AS k, count(*) FROM generate_series(1, 5000000) AS g(x) GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
}
names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(Q)
def peak(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM:"): return int(l.split()[1]) / 1024
d = Path(tempfile.mkdtemp())
s = Freshet(d, env={"FRESHET_QUERY_MEMORY_MB": limit, "FRESHET_MEMORY_MB": "32"}).start()
try:
    c = psycopg.connect(s.dsn(), autocommit=True)
    c.execute("SELECT count(*), max(length(repeat('w', 100) || x::text)) FROM generate_series(1, 100000) AS g(x)").fetchone()
    for r in range(rounds):
        for n in names:
            open(f"/proc/{s.proc.pid}/clear_refs", "w").write("5")
            b = peak(s.proc.pid); t = time.monotonic()
            try:
                c.execute(Q[n]).fetchall(); st = "ok"
            except psycopg.Error as e:
                st = e.sqlstate
            dt = time.monotonic() - t
            print(f"{n:11s} {st:6s} {dt:6.2f}s growth {(peak(s.proc.pid)-b)/int(limit):.2f}x", flush=True)
finally:
    s.stop()
