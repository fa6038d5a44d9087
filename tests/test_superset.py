"""Apache Superset's `superset test-db` (its headless compatibility probe: engine spec, the
SQLAlchemy inspector calls, SELECT 1, CREATE TABLE + INSERT + reading a timestamp back) with
default engine options, against freshet and against PostgreSQL."""

import os
import re
import subprocess
from pathlib import Path

SUPERSET = os.environ.get(
    "SUPERSET_BIN", str(Path.home() / ".cache/freshet/superset/venv/bin/superset"))


def superset_test_db(uri, tmp_path):
    """What `superset test-db uri` says of the inspector and of connecting and querying."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "superset_config.py"
    config.write_text(
        'SECRET_KEY = "freshet-superset-test-db-probe-key"\n'
        f'SQLALCHEMY_DATABASE_URI = "sqlite:///{tmp_path}/superset.db"\n')
    env = dict(os.environ, SUPERSET_CONFIG_PATH=str(config))
    run = subprocess.run([SUPERSET, "test-db", uri], input="n\n" * 5, capture_output=True,
                         text=True, env=env, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    checks = re.findall(r"^\s+- (get_\w+): (\w+)$", out, re.M)
    return checks, [line for line in out.splitlines() if "👍" in line], out


def test_superset_test_db_as_postgresql(freshet, postgres, tmp_path):
    ours, ours_ok, out = superset_test_db(
        f"postgresql+psycopg2://tester@127.0.0.1:{freshet.port}/freshet", tmp_path / "f")
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS superset_check WITH (FORCE)")
        c.execute("CREATE DATABASE superset_check")
    theirs, theirs_ok, _ = superset_test_db(
        f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/superset_check", tmp_path / "p")
    assert len(ours) == 10 and all(ok == "True" for _, ok in ours), out
    assert ours == theirs, out
    assert ours_ok == theirs_ok == [
        "👍 Found DB engine spec: PostgreSQL", "👍 Connected successfully!", "👍 Success!"], out
