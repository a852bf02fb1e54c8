"""The one test with the REAL dataops-testgen[standalone] from the package index: install with uv,
log in for real, stop (no TestGen or PostgreSQL process left), uninstall (no file left)."""

from __future__ import annotations

import json

import pytest
from conftest import Sandbox, processes_mentioning


@pytest.mark.real
@pytest.mark.timeout(1500)
def test_real_testgen_install_login_stop_uninstall(open_sandbox: Sandbox) -> None:
    sandbox = open_sandbox
    installed = sandbox.run(
        "install",
        "--no-demo",
        "--no-browser",
        "--port",
        str(sandbox.ui_port),
        "--api-port",
        str(sandbox.api_port),
        timeout=1200,
    )
    output = installed.stdout + installed.stderr
    assert installed.returncode == 0, output
    assert "OK      Verify the login" in installed.stdout and "'admin' logged in" in installed.stdout
    state = sandbox.state()
    assert state["package_engine"] == "uv" and state["product_version"].startswith("5.")
    password = sandbox.password()
    assert password not in output
    assert "TG_ANALYTICS=no" in (sandbox.home / "testgen/home/config.env").read_text()

    status = json.loads(sandbox.run("status", "--json").stdout)
    assert status["running"] and status["health"] == {"ui": True, "api": True}
    pgdata = str(sandbox.home / "testgen/home/pgdata")
    assert processes_mentioning(pgdata), "the embedded PostgreSQL should run while TestGen runs"

    stopped = sandbox.run("stop", timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    assert sandbox.processes() == []
    assert processes_mentioning(pgdata) == []

    removed = sandbox.run("uninstall", "--yes", timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert not sandbox.home.exists()
    assert sandbox.processes() == []
