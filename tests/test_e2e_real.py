"""The test with the REAL dataops-testgen[standalone] from the package index, the way a corporate
user meets it: no CA variable in the environment (this network inspects TLS with a CA that is only
in the system trust store), pip's config ignored, a private TMPDIR. An older release's install
with HTTPS (a certificate made in the test) is killed (SIGKILL) while `standalone-setup` runs; a
plain re-run recovers and ends logged in over HTTPS, listening on loopback only. The admin password
is then changed with TestGen's own models (as its UI would), and `upgrade` to the newest 5.x
succeeds and says the saved password no longer works. A backup, another password change and a
restore bring the backed-up password back. Then stop (no TestGen or PostgreSQL process left) and
uninstall (no file left)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import trustme
from conftest import Sandbox, free_ports, listening_addresses, processes_mentioning

from dk_installer.config import Settings
from dk_installer.paths import Paths
from dk_installer.testgen import app as testgen_app

OLDER_RELEASE = "5.92.2"
# Run with the TestGen venv's Python in TestGen's environment, TestGen stopped: what its UI does.
CHANGE_PASSWORD = """
import sys, bcrypt
from testgen.common.standalone_postgres import start_server
from testgen.common.models import database_session
from testgen.common.models.user import User
start_server()
with database_session():
    user = User.get("admin")
    user.password = bcrypt.hashpw(sys.stdin.readline().strip().encode(), bcrypt.gensalt()).decode()
    user.save()
"""
CORPORATE = {
    **dict.fromkeys(("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "PIP_CERT")),
    "PIP_CONFIG_FILE": "/dev/null",
}


def change_password(sandbox: Sandbox, env: dict[str, str | None], password: str) -> None:
    """What TestGen's UI does, with its own models; TestGen must be stopped."""
    testgen_home = sandbox.home / "testgen/home"
    changed = subprocess.run(
        [str(sandbox.home / "testgen/venv/bin/python"), "-c", CHANGE_PASSWORD],
        input=password + "\n",
        env=sandbox.merged_env(
            {
                **env,
                "TG_TESTGEN_HOME": str(testgen_home),
                "HOME": str(testgen_home),
                "XDG_RUNTIME_DIR": str(sandbox.home / "testgen/run"),
            }
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert changed.returncode == 0, changed.stderr


def wait_for_output(process: subprocess.Popen[str], text: str, timeout: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if text in line:
            return
        if not line and process.poll() is not None:
            break
    pytest.fail(f"never saw {text!r}:\n{seen}")


@pytest.mark.real
@pytest.mark.timeout(2400)
def test_real_testgen_killed_install_recovers_logs_in_stops_and_uninstalls(
    open_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sandbox = open_sandbox
    private_tmp: Path = tmp_path_factory.mktemp("private-tmp")
    env = {**CORPORATE, "TMPDIR": str(private_tmp)}
    certificates = tmp_path_factory.mktemp("tls")
    leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
    (certificates / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(certificates / "key.pem"))
    args = [
        "install",
        "--no-demo",
        "--no-browser",
        "--ssl-cert-file",
        str(certificates / "cert.pem"),
        "--ssl-key-file",
        str(certificates / "key.pem"),
        "--version",
        OLDER_RELEASE,
        "--port",
        str(sandbox.ui_port),
        "--api-port",
        str(sandbox.api_port),
    ]

    killed = sandbox.popen(*args, env=env)
    wait_for_output(killed, "Configure TestGen", timeout=1200)
    # Kill while standalone-setup really runs, once its PostgreSQL is up: the hardest moment.
    deadline = time.monotonic() + 300
    setup: list[tuple[int, str]] = []
    while time.monotonic() < deadline and not (
        setup and (sandbox.home / "testgen/home/pgdata/postmaster.pid").exists()
    ):
        setup = [(pid, cmd) for pid, cmd in sandbox.processes() if "standalone-setup" in cmd]
        time.sleep(0.2)
    assert setup, "standalone-setup never ran"
    assert (sandbox.home / "testgen/home/pgdata/postmaster.pid").exists(), "its PostgreSQL never started"
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert (sandbox.home / "journal.json").exists()

    started = time.monotonic()
    installed = sandbox.run(*args, env=env, timeout=1200)
    output = installed.stdout + installed.stderr
    assert installed.returncode == 0, output
    print(f"re-run after the kill: {time.monotonic() - started:.1f}s")
    assert "An interrupted `install` was found" in installed.stderr
    assert "OK      Verify the login" in installed.stdout and "'admin' logged in" in installed.stdout
    state = sandbox.state()
    assert state["package_engine"] == "uv" and state["product_version"] == OLDER_RELEASE
    password = sandbox.password()
    assert password not in output
    assert "TG_ANALYTICS=no" in (sandbox.home / "testgen/home/config.env").read_text()
    assert not (sandbox.home / "journal.json").exists()

    status = json.loads(sandbox.run("status", "--json", env=env).stdout)
    assert status["running"] and status["health"] == {"ui": True, "api": True}
    assert status["https"] and status["ui_url"] == f"https://localhost:{sandbox.ui_port}"
    assert listening_addresses(sandbox) == {sandbox.ui_port: {"127.0.0.1"}, sandbox.api_port: {"127.0.0.1"}}
    pgdata = str(sandbox.home / "testgen/home/pgdata")
    assert processes_mentioning(pgdata), "the embedded PostgreSQL should run while TestGen runs"

    # configure (issue 16), each option both ways, on the real TestGen: other ports with plain HTTP,
    # then back to the original ports with HTTPS. Each one restarts TestGen and logs in again.
    cert_args = [
        "--ssl-cert-file",
        str(certificates / "cert.pem"),
        "--ssl-key-file",
        str(certificates / "key.pem"),
    ]
    ui, api = free_ports(2)
    for change, scheme, ports in (
        (["--port", str(ui), "--api-port", str(api), "--no-ssl"], "http", (ui, api)),
        (["--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port), *cert_args], "https", None),
    ):
        started = time.monotonic()
        changed = sandbox.run("configure", *change, env=env, timeout=600)
        assert changed.returncode == 0, changed.stdout + changed.stderr
        assert "'admin' logged in" in changed.stdout, changed.stdout
        print(f"configure {' '.join(change)}: {time.monotonic() - started:.1f}s")
        status = json.loads(sandbox.run("status", "--json", env=env).stdout)
        ui_port, api_port = ports or (sandbox.ui_port, sandbox.api_port)
        assert status["health"] == {"ui": True, "api": True}
        assert status["ui_url"] == f"{scheme}://localhost:{ui_port}"
        assert listening_addresses(sandbox, (ui_port, api_port)) == {
            ui_port: {"127.0.0.1"},
            api_port: {"127.0.0.1"},
        }

    assert sandbox.run("stop", timeout=180, env=env).returncode == 0
    change_password(sandbox, env, "a-password-changed-in-the-ui")
    assert sandbox.run("start", timeout=600, env=env).returncode == 0
    started = time.monotonic()
    upgraded = sandbox.run("upgrade", timeout=1200, env=env)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    print(f"upgrade from {OLDER_RELEASE} with a changed password: {time.monotonic() - started:.1f}s")
    assert "SKIPPED Verify the login" in upgraded.stdout and "no longer works" in upgraded.stdout
    assert sandbox.state()["product_version"] != OLDER_RELEASE
    status = json.loads(sandbox.run("status", "--json", env=env).stdout)
    assert status["running"] and status["health"] == {"ui": True, "api": True}

    backup = tmp_path_factory.mktemp("backups") / "testgen.tar.gz"
    started = time.monotonic()
    assert sandbox.run("backup", "--output", str(backup), timeout=600, env=env).returncode == 0
    print(f"backup: {time.monotonic() - started:.1f}s, {backup.stat().st_size / 1024**2:.1f} MB")
    assert sandbox.run("stop", timeout=180, env=env).returncode == 0
    change_password(sandbox, env, "yet-another-password")
    assert sandbox.run("start", timeout=600, env=env).returncode == 0
    started = time.monotonic()
    restored = sandbox.run("restore", str(backup), "--yes", timeout=900, env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    print(f"restore: {time.monotonic() - started:.1f}s")
    testgen = testgen_app.TestGen(
        Paths(sandbox.home, sandbox.config / "dk-installer"),
        Settings(),
        sandbox.ui_port,
        sandbox.api_port,
        False,
        "127.0.0.1",
        True,
    )
    assert testgen.login("admin", "a-password-changed-in-the-ui") is True  # the backed-up password
    assert testgen.login("admin", "yet-another-password") is False

    stopped = sandbox.run("stop", timeout=180, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert sandbox.processes() == []
    assert processes_mentioning(pgdata) == []
    assert list(private_tmp.iterdir()) == [], "uv or TestGen wrote into the user's TMPDIR"

    removed = sandbox.run("uninstall", "--yes", timeout=300, env=env)
    assert removed.returncode == 0, removed.stderr
    assert not sandbox.home.exists()
    assert sandbox.processes() == []
