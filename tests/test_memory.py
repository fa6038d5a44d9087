"""The memory budget (`--memory-mb`): RocksDB's block cache and memtables and the operator
caches of every view share it, whatever the number of views, and `freshet_internal.memory`
shows each part against its budget. Views stay exact while their caches evict."""
import pytest

from conftest import Freshet, wait_for

BUDGET_MB = 64

TABLES = [
    "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT, region INT)",
    "CREATE TABLE orders (id INT PRIMARY KEY, cust INT, amount INT, note TEXT)",
    "CREATE TABLE ticks (id SERIAL PRIMARY KEY)",
]

# Joins and aggregates whose state would fill several caches of 16 MB (the operator caches'
# quarter of the budget) each: 150,000 orders with 80-byte notes, 30,000 customers.
VIEWS = {
    "by_name": "SELECT o.id, c.name, o.amount FROM orders o JOIN customers c ON o.cust = c.id",
    "per_customer": "SELECT cust, count(*) AS n, sum(amount) AS total, min(amount) AS lo, "
                    "max(amount) AS hi FROM orders GROUP BY cust",
    "per_region": "SELECT c.region, sum(o.amount) AS total, count(*) AS n "
                  "FROM orders o JOIN customers c ON o.cust = c.id GROUP BY c.region",
    "per_note": "SELECT note, count(*) AS n, max(amount) AS hi FROM orders GROUP BY note",
    "big_customers": "SELECT c.id, c.name FROM customers c WHERE EXISTS "
                     "(SELECT 1 FROM orders o WHERE o.cust = c.id AND o.amount > 900)",
}

LOAD = [
    "INSERT INTO customers SELECT g, 'customer ' || g, g % 25 FROM generate_series(1, 30000) AS s(g)",
    "INSERT INTO orders SELECT g, 1 + (g * 7919) % 30000, (g * 31) % 1000, "
    "rpad('note ' || (g % 50000)::text, 80, '.') FROM generate_series(1, 150000) AS s(g)",
]


def memory(c):
    return {name: (budget, used) for name, budget, used in
            c.execute("SELECT name, budget_bytes, used_bytes FROM freshet_internal.memory")}


def assert_within_budget(c, when):
    m = memory(c)
    budget = BUDGET_MB << 20
    state_budget, state_used = m["state"]
    assert state_budget == budget, m
    parts = ("rocksdb_block_cache", "operator_caches")
    assert sum(m[p][0] for p in parts) == budget, m
    assert state_used == sum(m[p][1] for p in parts), m
    # The operator caches give back what an epoch took past their budget when it ends.
    caches_budget, caches_used = m["operator_caches"]
    assert caches_budget == budget // 4, m
    assert caches_used <= caches_budget, f"{when}: operator caches over budget: {m}"
    cache_budget, _ = m["rocksdb_block_cache"]
    memtables_budget, _ = m["rocksdb_memtables"]
    assert memtables_budget <= cache_budget // 2, m
    # Memtables are charged to the block cache. A write goes whole into a memtable, and the
    # next one starts a flush if they are past their budget: after a small write, both come
    # back within their budgets (a margin for blocks in use and the flush under way).
    c.execute("INSERT INTO ticks VALUES (DEFAULT)")

    def settled():
        now = memory(c)
        (mb, mu), (cb, cu) = now["rocksdb_memtables"], now["rocksdb_block_cache"]
        return now if mu <= mb * 1.25 and cu <= cb * 1.1 else None
    try:
        wait_for(settled, timeout=30, what="memtables and block cache within their budgets")
    except TimeoutError:
        raise AssertionError(f"{when}: RocksDB's memory over budget: {memory(c)}")
    assert m["process"][0] is None and m["process"][1] > 0 and m["process_peak"][1] >= m["process"][1], m
    return m


def assert_views_match(f, p, when):
    for name, query in VIEWS.items():
        got = sorted(f.execute(f"SELECT * FROM {name}").fetchall())
        expected = sorted(p.execute(query).fetchall())
        assert got == expected, f"{when}: view {name} differs from PostgreSQL's"


def test_views_share_one_memory_budget(tmp_path, postgres):
    server = Freshet(tmp_path, env={"FRESHET_MEMORY_MB": str(BUDGET_MB)}).start()
    try:
        with server.connect() as f, postgres.connect() as p:
            p.execute("DROP TABLE IF EXISTS customers, orders")
            for stmt in TABLES + LOAD:
                f.execute(stmt)
                p.execute(stmt)
            for name, query in VIEWS.items():
                f.execute(f"CREATE MATERIALIZED VIEW {name} AS {query}")
                assert_within_budget(f, f"after creating {name}")
            assert_views_match(f, p, "backfill")
            # Changes touching every customer and most notes: every cache fills and evicts.
            for k in range(4):
                for stmt in [f"UPDATE orders SET amount = (amount + 377) % 1000 WHERE id % 4 = {k}",
                             f"UPDATE customers SET region = (region + 1) % 25 WHERE id % 8 = {k}"]:
                    f.execute(stmt)
                    p.execute(stmt)
                m = assert_within_budget(f, f"round {k}")
                assert_views_match(f, p, f"round {k}")
            # The caches were used up to their budget, not kept small.
            assert m["operator_caches"][1] > m["operator_caches"][0] // 4, m
    finally:
        server.stop()
