"""The same script in freshet and in PostgreSQL gives the same results, in both protocols.

Rows are compared as multisets (ORDER BY ... LIMIT results as lists); numbers are compared
by value, so `numeric` 2.50 equals `double` 2.5 and `bigint` 3 equals `numeric` 3.
"""
import decimal
from collections import Counter
from pathlib import Path

import psycopg
import pytest

SCRIPT = Path(__file__).with_name("compat.sql")


def statements():
    text = "\n".join(l for l in SCRIPT.read_text().splitlines() if not l.startswith("--"))
    return [s.strip() for s in text.split(";\n") if s.strip().rstrip(";")]


def norm(v):
    if isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool):
        return round(float(v), 6)
    return v


def run(conn, sql, simple):
    cur = psycopg.ClientCursor(conn) if simple else conn.cursor()
    cur.execute(sql)
    if cur.description is None:
        return ("command", cur.rowcount)
    rows = [tuple(norm(v) for v in r) for r in cur.fetchall()]
    return ("rows", rows if "LIMIT" in sql else Counter(rows))


@pytest.mark.parametrize("simple", [True, False], ids=["simple", "extended"])
def test_script_matches_postgres(freshet, postgres, simple):
    with freshet.connect() as f, postgres.connect() as p:
        p.execute("DROP TABLE IF EXISTS cmp_people, cmp_orders, cmp_codes, cmp_arr")
        for sql in statements():
            expected = run(p, sql, simple)
            got = run(f, sql, simple)
            assert got == expected, f"{sql}\nfreshet:  {got}\npostgres: {expected}"
