"""The REAL dataops-testgen on a REAL PostgreSQL server (Debian's, started by the suite), the way
a corporate user meets it (no CA variable, pip's config ignored). Two runs, one after the other in
one test (the rest of the suite runs beside it, so one real install at a time):

- on a server from the start: a wrong password and an unreachable server refused in preflight
  (exit 3, nothing written); install --database of an older release; upgrade to the newest 5.x
  (TestGen's schema dumped first); a backup while TestGen runs, the data changed, a restore; and
  uninstall, which leaves TestGen's schema on the server;
- from the embedded database: an install with the demo data, migrate-database to the server (the
  demo's own database moves too), the demo's profiling run through TestGen's scheduler, then
  `configure --listen 0.0.0.0` with a certificate for this host (an OAuth client logs in through the
  printed host name) and back to loopback, and uninstall."""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import tarfile
import time

import pytest
import trustme
from conftest import Sandbox, free_port
from pg_server import PostgresServer

from dk_installer.config import Settings
from dk_installer.defaults import ALL_ADDRESSES
from dk_installer.net import shared_host_names
from dk_installer.paths import Paths
from dk_installer.testgen import app as testgen_app
from dk_installer.testgen.login import oauth_login

pytestmark = pytest.mark.real

OLDER_RELEASE = "5.92.2"
DEMO_TABLE_GROUP = "0ea85e17-acbe-47fe-8394-9970725ad37d"  # quick-start's table group
CORPORATE = {
    **dict.fromkeys(("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "PIP_CERT")),
    "PIP_CONFIG_FILE": "/dev/null",
}


def new_account(server: PostgresServer) -> tuple[str, str, str]:
    name = secrets.token_hex(4)
    role, database, password = f"tg_{name}", f"db_{name}", secrets.token_urlsafe(14)
    server.create_role(role, password, createdb=True)
    server.create_database(database, role)
    return role, database, password


def count_testgen_tables(server: PostgresServer, database: str) -> int:
    rows = server.sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'testgen'", database=database
    )
    return rows[0][0]


def real_install_args(sandbox: Sandbox, *extra: str) -> list[str]:
    """install from the package index (never the suite's stand-in wheels)."""
    ports = ["--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port)]
    return ["install", "--no-browser", *ports, *extra]


def installed_testgen(sandbox: Sandbox) -> testgen_app.TestGen:
    return testgen_app.TestGen(
        Paths(sandbox.home, sandbox.config / "dk-installer"),
        Settings(),
        sandbox.ui_port,
        sandbox.api_port,
        False,
    )


def timed(label: str, run: subprocess.CompletedProcess[str], started: float) -> str:
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    print(f"{label}: {time.monotonic() - started:.1f}s")
    return output


@pytest.mark.timeout(2400)  # beside the other real test and the rest of the suite on 2 cores
def test_real_testgen_on_a_postgresql_server_then_migrated_to_one(
    open_sandbox: Sandbox, postgres_server: PostgresServer
) -> None:
    """One after the other in one test (one real install at a time: the suite runs beside them)."""
    on_a_server_from_the_start(open_sandbox, postgres_server)
    migrated_from_the_embedded_database(open_sandbox, postgres_server)


def on_a_server_from_the_start(sandbox: Sandbox, server: PostgresServer) -> None:
    role, database, password = new_account(server)
    # TestGen 5.92.2's setup-system-db creates roles of its own (testgen_execute_role, testgen_execute,
    # testgen_report_role, testgen_report: once per server), which needs CREATEROLE; newer ones do not.
    server.sql(f"ALTER ROLE {role} CREATEROLE")
    url = server.url(role, database)
    env = {**CORPORATE, "PGPASSWORD": password}
    base = ["--no-demo", "--version", OLDER_RELEASE]

    wrong = sandbox.run(
        *real_install_args(sandbox, *base, "--database", url), env={**env, "PGPASSWORD": "not-it"}
    )
    assert wrong.returncode == 3 and "password" in wrong.stdout + wrong.stderr
    gone = f"postgresql://{role}@127.0.0.1:{free_port()}/{database}"
    unreachable = sandbox.run(*real_install_args(sandbox, *base, "--database", gone), env=env)
    assert unreachable.returncode == 3 and "127.0.0.1" in unreachable.stdout + unreachable.stderr
    assert not (sandbox.home / "testgen").exists()

    started = time.monotonic()
    output = timed(
        "install --database",
        sandbox.run(*real_install_args(sandbox, *base, "--database", url), env=env, timeout=1500),
        started,
    )
    assert "'admin' logged in" in output and password not in output
    assert count_testgen_tables(server, database) > 20
    assert not (sandbox.home / "testgen/home/pgdata").exists()
    status = json.loads(sandbox.run("status", "--json", env=env).stdout)
    assert status["database"]["answers"] and status["database"]["version"].startswith("15")

    started = time.monotonic()
    output = timed("upgrade", sandbox.run("upgrade", env=env, timeout=1500), started)
    assert "OK      Dump TestGen's schema on the server" in output
    assert "OK      Upgrade TestGen's database" in output
    new_version = sandbox.state()["product_version"]
    assert new_version != OLDER_RELEASE

    archive = sandbox.root / "server-backup.tar.gz"
    started = time.monotonic()
    timed("backup", sandbox.run("backup", "--output", str(archive), env=env, timeout=900), started)
    print(f"backup size: {archive.stat().st_size / 1024:.0f} KB")
    assert json.loads(sandbox.run("status", "--json", env=env).stdout)["running"], "TestGen kept running"
    with tarfile.open(archive) as tar:
        assert json.load(tar.extractfile("manifest.json"))["data"] == "server"
    server.sql("DELETE FROM testgen.auth_users", database=database)
    assert installed_testgen(sandbox).login("admin", sandbox.password()) is False
    started = time.monotonic()
    output = timed("restore", sandbox.run("restore", str(archive), "--yes", env=env, timeout=900), started)
    assert "'admin' logged in" in output

    removed = sandbox.run("uninstall", "--yes", env=env, timeout=300)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "left as it is" in removed.stdout
    assert count_testgen_tables(server, database) > 20, "the server keeps TestGen's data"
    assert sandbox.processes() == []


def migrated_from_the_embedded_database(sandbox: Sandbox, server: PostgresServer) -> None:
    role, database, password = new_account(server)
    url = server.url(role, database)
    env = {**CORPORATE, "PGPASSWORD": password}

    started = time.monotonic()
    timed(
        "embedded install with the demo",
        sandbox.run(*real_install_args(sandbox), env=env, timeout=2400),
        started,
    )
    started = time.monotonic()
    output = timed(
        "migrate-database", sandbox.run("migrate-database", "--to", url, env=env, timeout=1500), started
    )
    assert "'admin' logged in" in output and password not in output
    assert sandbox.state()["database"] == url
    assert (sandbox.home / "testgen/home/pgdata").exists(), "the embedded data stays"
    demo = f"{database}_demo"
    assert server.sql("SELECT project_host, project_db FROM testgen.connections", database=database) == [
        ["127.0.0.1", demo]
    ]
    assert server.sql("SELECT count(*) FROM pg_database WHERE datname = :name", name=demo) == [[1]]

    # The demo's profiling, through TestGen's own CLI and scheduler, now reads the server.
    testgen = installed_testgen(sandbox)
    profiled = subprocess.run(
        [str(testgen.program("testgen")), "run-profile", "--table-group-id", DEMO_TABLE_GROUP],
        env=testgen.environment(),
        cwd=testgen.working_dir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert profiled.returncode == 0, profiled.stdout + profiled.stderr
    assert "failed" not in profiled.stdout.lower(), profiled.stdout

    # Shared over HTTPS (issue 16): an OAuth client logs in through the printed host name, with a
    # certificate that names it; then back to this machine only. Each way is one restart and a login.
    host = shared_host_names(ALL_ADDRESSES)[0]
    ca = trustme.CA()
    leaf = ca.issue_cert(host, "localhost", "127.0.0.1")
    cert, key = sandbox.root / "shared-cert.pem", sandbox.root / "shared-key.pem"
    cert.write_bytes(
        b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + ca.cert_pem.bytes()
    )  # full chain
    leaf.private_key_pem.write_to_path(str(key))
    started = time.monotonic()
    shared = sandbox.run(
        "configure",
        "--listen",
        ALL_ADDRESSES,
        "--ssl-cert-file",
        str(cert),
        "--ssl-key-file",
        str(key),
        env=env,
    )
    assert "'admin' logged in" in timed("configure --listen 0.0.0.0", shared, started)
    status = json.loads(sandbox.run("status", "--json", env=env).stdout)
    assert status["api_url"] == f"https://{host}:{sandbox.api_port}" and status["warnings"] == []
    client = ssl.create_default_context()
    ca.configure_trust(client)
    assert oauth_login(status["api_url"], client, "admin", sandbox.password()) is True
    assert oauth_login(status["api_url"], client, "admin", "not-the-password") is False
    started = time.monotonic()
    local = sandbox.run("configure", "--listen", "127.0.0.1", env=env)
    assert "'admin' logged in" in timed("configure --listen 127.0.0.1", local, started)
    assert json.loads(sandbox.run("status", "--json", env=env).stdout)["api_url"].startswith(
        "https://localhost:"
    )

    removed = sandbox.run("uninstall", "--yes", env=env, timeout=300)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert count_testgen_tables(server, database) > 20
    assert sandbox.processes() == []
