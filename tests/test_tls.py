"""TLS: with --tls-cert/--tls-key, clients connect with sslmode=require and verify-full
against a CA the test makes; a client trusting another CA is refused; loopback clients without
TLS are still served."""
import subprocess

import psycopg
import pytest

from conftest import Freshet


def make_certs(d):
    """A CA and a certificate for localhost / 127.0.0.1 signed by it; and a second CA."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    for ca in ["ca", "other"]:
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out",
            f"{ca}.pem", "-days", "2", "-subj", f"/CN=freshet test {ca}")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")


def test_tls_verify_full(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certs(certs)
    server = Freshet(tmp_path, env={"FRESHET_TLS_CERT": str(certs / "server.pem"),
                                    "FRESHET_TLS_KEY": str(certs / "server.key")}).start()
    try:
        base = f"host=localhost port={server.port} dbname=freshet user=tester"
        for mode in ["require", "verify-full"]:
            with psycopg.connect(f"{base} sslmode={mode} sslrootcert={certs / 'ca.pem'}",
                                 autocommit=True) as conn:
                assert conn.pgconn.ssl_in_use
                assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(f"{base} sslmode=verify-full sslrootcert={certs / 'other.pem'}")
        assert "certificate" in str(e.value).lower()
        # psql, the same way.
        out = subprocess.run(
            ["psql", f"{base} sslmode=verify-full sslrootcert={certs / 'ca.pem'}", "-tAc",
             "SELECT 'over tls'"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "over tls", out.stderr
        # Loopback clients without TLS are still served.
        with psycopg.connect(f"{base} sslmode=disable", autocommit=True) as conn:
            assert not conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
