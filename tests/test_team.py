"""Team features (issue 11): HTTPS with the user's certificate, loopback by default and --listen to
share, the API docs and MCP URLs in plain sight. Stand-in TestGen, real processes and sockets."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from pathlib import Path

import pytest
import trustme
from conftest import Sandbox, listening_addresses


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path, trustme.CA]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key, ca


def test_https_install_serves_https_checks_it_and_keeps_it(
    sandbox: Sandbox, certificate: tuple[Path, Path, trustme.CA]
) -> None:
    cert, key, ca = certificate
    result = sandbox.install(
        "--no-demo", "--version", "5.0.0", "--ssl-cert-file", str(cert), "--ssl-key-file", str(key)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'admin' logged in" in result.stdout  # the login went over HTTPS, verified
    assert f"https://localhost:{sandbox.ui_port}" in result.stdout
    installed_key = sandbox.home / "testgen/home/tls/key.pem"
    assert installed_key.stat().st_mode & 0o777 == 0o600
    config = (sandbox.home / "testgen/home/config.env").read_text()
    assert "TG_UI_TLS_ENABLED=yes" in config and "TG_API_TLS_ENABLED=yes" in config
    assert f"SSL_KEY_FILE={installed_key}" in config
    assert f"URL:      https://localhost:{sandbox.ui_port}" in (sandbox.home / "credentials.txt").read_text()
    status = sandbox.status()
    assert status["https"] is True and status["ui_url"].startswith("https://")
    assert status["health"] == {"ui": True, "api": True}
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with urllib.request.urlopen(
        f"https://localhost:{sandbox.api_port}/api/v1/health", context=context
    ) as page:
        assert page.status == 200
    with pytest.raises(OSError):  # plain HTTP is not served
        urllib.request.urlopen(f"http://127.0.0.1:{sandbox.api_port}/api/v1/health", timeout=5)
    assert sandbox.run("stop").returncode == 0
    assert sandbox.run("start").returncode == 0
    upgraded = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "'admin' logged in" in upgraded.stdout
    assert sandbox.status()["https"] is True and sandbox.state()["tls"] is True


@pytest.mark.parametrize("problem", ["only-cert", "only-key", "unreadable", "mismatched", "not-pem"])
def test_bad_certificates_are_usage_errors_and_nothing_is_installed(
    sandbox: Sandbox, certificate: tuple[Path, Path, trustme.CA], tmp_path: Path, problem: str
) -> None:
    cert, key, ca = certificate
    other_key = tmp_path / "other-key.pem"
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(other_key))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    args = {
        "only-cert": ["--ssl-cert-file", str(cert)],
        "only-key": ["--ssl-key-file", str(key)],
        "unreadable": ["--ssl-cert-file", str(tmp_path / "missing.pem"), "--ssl-key-file", str(key)],
        "mismatched": ["--ssl-cert-file", str(cert), "--ssl-key-file", str(other_key)],
        "not-pem": ["--ssl-cert-file", str(garbage), "--ssl-key-file", str(key)],
    }[problem]
    result = sandbox.install("--no-demo", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "--ssl" in result.stderr
    assert not sandbox.home.exists()


def test_new_installs_listen_on_loopback_and_say_how_to_share(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert listening_addresses(sandbox) == {sandbox.ui_port: {"127.0.0.1"}, sandbox.api_port: {"127.0.0.1"}}
    assert "Reachable from this machine only" in result.stdout and "--listen 0.0.0.0" in result.stdout
    assert sandbox.state()["listen"] == "127.0.0.1"
    status = sandbox.status()
    assert status["api_docs_url"] == f"http://localhost:{sandbox.api_port}/api/docs"
    assert status["mcp_url"] == f"http://localhost:{sandbox.api_port}/mcp"
    assert f"MCP server:   http://localhost:{sandbox.api_port}/mcp" in result.stdout
    text = sandbox.run("status").stdout
    assert "API docs" in text and "MCP" in text and "Listening on 127.0.0.1" in text


def test_listen_on_all_addresses_shares_it_with_working_links(
    sandbox: Sandbox, certificate: tuple[Path, Path, trustme.CA]
) -> None:
    cert, key, _ = certificate  # sharing is HTTPS or refused (test_configure.py)
    result = sandbox.install(
        "--no-demo", "--listen", "0.0.0.0", "--ssl-cert-file", str(cert), "--ssl-key-file", str(key)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'admin' logged in" in result.stdout
    assert listening_addresses(sandbox) == {sandbox.ui_port: {"0.0.0.0"}, sandbox.api_port: {"0.0.0.0"}}
    status = sandbox.status()
    assert "localhost" not in status["ui_url"]
    host = status["ui_url"].split("//", 1)[1].rsplit(":", 1)[0]
    network = json.loads((sandbox.home / "testgen/home/fake-network.log").read_text().splitlines()[-1])
    assert network["TG_UI_BASE_URL"] == status["ui_url"] and network["TG_BASE_URL"] == status["api_url"]
    assert host in network["TG_MCP_EXTRA_ALLOWED_HOSTS"].split(",")
    assert "Shared:       listening on 0.0.0.0" in result.stdout


def test_listen_on_an_address_this_machine_does_not_have_is_refused(sandbox: Sandbox) -> None:
    for address, complaint in (
        ("203.0.113.7", "has no address 203.0.113.7"),
        ("not-an-ip", "not an IP address"),
    ):
        result = sandbox.install("--no-demo", "--listen", address)
        assert result.returncode == 2, result.stdout + result.stderr
        assert complaint in result.stderr
        assert not sandbox.home.exists()


def test_a_receipt_from_the_previous_version_keeps_listening_everywhere(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    state = sandbox.state()
    for field in ("listen", "tls"):
        del state[field]
    (sandbox.home / "state.json").write_text(json.dumps(state))
    started = sandbox.run("start")
    assert started.returncode == 0, started.stderr
    assert listening_addresses(sandbox) == {sandbox.ui_port: {"0.0.0.0"}, sandbox.api_port: {"0.0.0.0"}}


def test_the_app_log_is_rotated_while_testgen_runs(sandbox: Sandbox) -> None:
    chatty = {"DK_INSTALLER_APP_LOG_MAX_BYTES": "20000", "FAKE_TESTGEN_LOG_LINES": "2000"}  # ~200 KB
    assert sandbox.install("--no-demo", env=chatty).returncode == 0
    logs = sandbox.home / "logs"
    rotated = sorted(logs.glob("testgen-app.log.*"))
    assert [p.name for p in rotated] == [f"testgen-app.log.{n}" for n in range(1, 6)], (
        "5 older files are kept"
    )
    for path in [logs / "testgen-app.log", *rotated]:
        assert path.stat().st_size < 20000 + 200
    lines = "".join(p.read_text() for p in reversed([logs / "testgen-app.log", *rotated])).splitlines()
    numbered = [line.split()[2] for line in lines if line.startswith("log line")]
    assert numbered == sorted(numbered) and numbered[-1] == "001999"  # in order, the newest kept
    # The running app keeps logging into the current file.
    urllib.request.urlopen(f"http://127.0.0.1:{sandbox.api_port}/api/v1/health", timeout=5).close()
    deadline = time.monotonic() + 10
    while '"GET /api/v1/health' not in (logs / "testgen-app.log").read_text().splitlines()[-1]:
        assert time.monotonic() < deadline, "the app's newest output did not reach the current log"
        time.sleep(0.1)
    assert sandbox.run("stop").returncode == 0
    assert sandbox.processes() == []  # the log pump went with TestGen
