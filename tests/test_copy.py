"""COPY … FROM STDIN: text and CSV formats through psycopg and psql, one atomic statement each,
maintaining the views that read the table."""
import decimal
import subprocess

import pytest
from psycopg import errors


def test_copy_text_and_csv_with_a_view(freshet):
    with freshet.connect() as c:
        c.execute("CREATE TABLE c (id INT PRIMARY KEY, s TEXT, n NUMERIC(6,2), ok BOOLEAN)")
        c.execute("CREATE MATERIALIZED VIEW cv AS SELECT count(*) AS rows, count(s) AS texts, sum(n) AS total FROM c")
        with c.cursor().copy("COPY c FROM STDIN") as cp:
            for i in range(1, 1001):
                cp.write_row((i, None if i % 10 == 0 else f"t\t{i}", decimal.Decimal(i) / 4, i % 2 == 0))
        assert c.execute("SELECT * FROM cv").fetchone() == (1000, 900, decimal.Decimal("125125.00"))
        assert c.execute("SELECT s, ok FROM c WHERE id = 3").fetchone() == ("t\t3", False)
        with c.cursor().copy("COPY c (id, s) FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
            cp.write('id,s\n2001,"a,""b"""\n2002,\n2003,""\n')
        assert c.execute("SELECT id, s FROM c WHERE id > 2000 ORDER BY id").fetchall() == [
            (2001, 'a,"b"'), (2002, None), (2003, "")]
        assert c.execute("SELECT rows, texts FROM cv").fetchone() == (1003, 902)


def test_copy_is_all_or_nothing(freshet):
    with freshet.connect() as c:
        c.execute("CREATE TABLE a (id INT PRIMARY KEY, v INT NOT NULL)")
        c.execute("CREATE MATERIALIZED VIEW av AS SELECT count(*) AS n FROM a")
        with pytest.raises(errors.InvalidTextRepresentation):
            with c.cursor().copy("COPY a FROM STDIN") as cp:
                cp.write("1\t1\n2\tx\n")
        with pytest.raises(errors.UniqueViolation):
            with c.cursor().copy("COPY a FROM STDIN") as cp:
                cp.write("1\t1\n1\t2\n")
        with pytest.raises(errors.NotNullViolation):
            with c.cursor().copy("COPY a FROM STDIN") as cp:
                cp.write("1\t\\N\n")
        with pytest.raises(errors.BadCopyFileFormat):
            with c.cursor().copy("COPY a FROM STDIN") as cp:
                cp.write("1\t1\t1\n")
        with pytest.raises(errors.UndefinedColumn):
            c.execute("COPY a (nope) FROM STDIN")
        assert c.execute("SELECT count(*) FROM a").fetchone() == (0,)
        assert c.execute("SELECT n FROM av").fetchone() == (0,)
        # the connection is fine afterwards
        with c.cursor().copy("COPY a FROM STDIN") as cp:
            cp.write("1\t1\n2\t2\n")
        assert c.execute("SELECT n FROM av").fetchone() == (2,)


def test_psql_copy(freshet, tmp_path):
    data = tmp_path / "rows.csv"
    data.write_text("".join(f"{i},name {i}\n" for i in range(500)))
    with freshet.connect() as c:
        c.execute("CREATE TABLE p (id INT PRIMARY KEY, name TEXT)")
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(freshet.port), "-d", "freshet",
                          "-c", f"\\copy p FROM '{data}' WITH (FORMAT csv)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "COPY 500" in out.stdout
    with freshet.connect() as c:
        assert c.execute("SELECT count(*), max(name) FROM p").fetchone() == (500, "name 99")
