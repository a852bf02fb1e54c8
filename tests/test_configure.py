"""`configure` (issue 16): ports, listen address and HTTPS changed on a running install, each way
and back, checked with real HTTP(S) requests; refused before anything stops, rolled back when the
new settings do not run; `install` pointing to it; sharing only over HTTPS; certificate names and
expiry in status and doctor. Stand-in TestGen, real processes, sockets and certificates."""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
import urllib.request
from pathlib import Path

import pytest
import trustme
from conftest import Sandbox, free_port, free_ports, listening_addresses
from test_service import UNIT, calls, with_systemctl


def issue(ca: trustme.CA, directory: Path, *names: str, days: int = 365, tag: str = "") -> tuple[Path, Path]:
    leaf = ca.issue_cert(
        *names, not_after=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    )
    cert, key = directory / f"cert{tag}.pem", directory / f"key{tag}.pem"
    # The full chain, root included, as clients need it (a leaf alone draws a warning: see below).
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + ca.cert_pem.bytes())
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def host_names() -> list[str]:
    """Every name and address the installer may print for a shared install of this machine."""
    names = [socket.getfqdn(), socket.gethostname(), "localhost", "127.0.0.1"]
    try:
        names += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    return list(dict.fromkeys(names))


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def answers(url: str, ca: trustme.CA | None = None) -> int | None:
    context = None
    if url.startswith("https"):
        context = ssl.create_default_context()
        assert ca is not None
        ca.configure_trust(context)
        context.check_hostname = False  # probed at 127.0.0.1; names are checked on their own
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as page:
            return int(page.status)
    except OSError:
        return None


def assert_serves(ui: int, api: int, scheme: str = "http", ca: trustme.CA | None = None) -> None:
    assert answers(f"{scheme}://127.0.0.1:{ui}/_stcore/health", ca) == 200
    assert answers(f"{scheme}://127.0.0.1:{api}/api/v1/health", ca) == 200


def assert_closed(*ports: int) -> None:
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def oauth_register(port: int, host: str, ca: trustme.CA | None) -> int:
    """An OAuth client registration as a client on another machine makes it: to 127.0.0.1, but
    with the printed host name in the Host header (what authlib judges)."""
    if ca is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        context.check_hostname = False
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    body = json.dumps({"redirect_uris": ["http://localhost:1/cb"], "client_name": "test"})
    connection.request("POST", "/oauth/register", body, {"Host": f"{host}:{port}"})
    status = connection.getresponse().status
    connection.close()
    return status


def installed(sandbox: Sandbox, *extra: str) -> None:
    done = sandbox.install("--no-demo", "--version", "5.0.0", *extra)
    assert done.returncode == 0, done.stdout + done.stderr


def configure(sandbox: Sandbox, *args: str, env: dict[str, str | None] | None = None, code: int = 0) -> str:
    result = sandbox.run("configure", *args, env=env)
    assert result.returncode == code, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_ports_change_and_change_back(sandbox: Sandbox) -> None:
    installed(sandbox)
    old_ui, old_api = sandbox.ui_port, sandbox.api_port
    new_ui, new_api = free_ports(2)
    output = configure(sandbox, "--port", str(new_ui), "--api-port", str(new_api))
    assert "'admin' logged in" in output and f"http://localhost:{new_ui}" in output
    assert_serves(new_ui, new_api)
    assert_closed(old_ui, old_api)
    state = sandbox.state()
    assert (state["ui_port"], state["api_port"]) == (new_ui, new_api)
    config = (sandbox.home / "testgen/home/config.env").read_text()
    assert f"TG_UI_PORT={new_ui}" in config and f"TG_API_PORT={new_api}" in config
    assert f"URL:      http://localhost:{new_ui}" in (sandbox.home / "credentials.txt").read_text()
    assert not (sandbox.home / "testgen/settings.before").exists()
    assert sandbox.status()["health"] == {"ui": True, "api": True}

    configure(sandbox, "--port", str(old_ui), "--api-port", str(old_api))
    assert_serves(old_ui, old_api)
    assert_closed(new_ui, new_api)
    assert "Nothing to change" in configure(sandbox, "--port", str(old_ui))


def test_https_and_sharing_on_and_off(sandbox: Sandbox, ca: trustme.CA, tmp_path: Path) -> None:
    installed(sandbox)
    cert, key = issue(ca, tmp_path, *host_names())
    ui, api = sandbox.ui_port, sandbox.api_port

    configure(sandbox, "--ssl-cert-file", str(cert), "--ssl-key-file", str(key))  # HTTP -> HTTPS
    assert_serves(ui, api, "https", ca)
    assert answers(f"http://127.0.0.1:{api}/api/v1/health") is None
    assert sandbox.state()["tls"] is True and sandbox.status()["ui_url"].startswith("https://localhost")

    output = configure(sandbox, "--listen", "0.0.0.0")  # loopback -> shared, with the certificate
    assert "'admin' logged in" in output and "Warning" not in output
    assert listening_addresses(sandbox) == {ui: {"0.0.0.0"}, api: {"0.0.0.0"}}
    status = sandbox.status()
    host = status["ui_url"].split("//", 1)[1].rsplit(":", 1)[0]
    assert host != "localhost" and status["warnings"] == []
    assert oauth_register(api, host, ca) == 201  # a client elsewhere can log in over HTTPS
    doctor = sandbox.run("doctor").stdout
    assert "HTTPS" in doctor and f"{host} covered" in doctor

    configure(sandbox, "--listen", "127.0.0.1")  # shared -> loopback
    assert listening_addresses(sandbox) == {ui: {"127.0.0.1"}, api: {"127.0.0.1"}}

    configure(sandbox, "--no-ssl")  # HTTPS -> HTTP
    assert_serves(ui, api)
    assert not (sandbox.home / "testgen/home/tls").exists()
    assert "SSL_CERT_FILE" not in (sandbox.home / "testgen/home/config.env").read_text()
    assert sandbox.state()["tls"] is False and sandbox.status()["certificate_expires"] is None


def test_a_port_someone_holds_is_refused_before_anything_stops(sandbox: Sandbox) -> None:
    installed(sandbox)
    pid = sandbox.status()["pid"]
    receipt = (sandbox.home / "state.json").read_text()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        output = configure(sandbox, "--port", str(taken), code=3)
    assert f"UI port {taken}" in output and "already in use" in output
    assert "Stop TestGen" not in output
    assert sandbox.status()["pid"] == pid and (sandbox.home / "state.json").read_text() == receipt
    assert_serves(sandbox.ui_port, sandbox.api_port)


def test_new_settings_that_do_not_start_are_rolled_back(
    sandbox: Sandbox, ca: trustme.CA, tmp_path: Path
) -> None:
    installed(sandbox)
    config = (sandbox.home / "testgen/home/config.env").read_text()
    receipt = (sandbox.home / "state.json").read_text()
    new_ui = free_port()
    cert, key = issue(ca, tmp_path, "localhost")
    output = configure(
        sandbox,
        "--port",
        str(new_ui),
        "--ssl-cert-file",
        str(cert),
        "--ssl-key-file",
        str(key),
        env={"FAKE_TESTGEN_CRASH_ON_PORT": str(new_ui)},
        code=1,
    )
    assert "TestGen exited during start-up" in output and "Start the previous TestGen again" in output
    assert (sandbox.home / "testgen/home/config.env").read_text() == config
    assert (sandbox.home / "state.json").read_text() == receipt
    assert not (sandbox.home / "testgen/home/tls").exists()
    assert not (sandbox.home / "testgen/settings.before").exists()
    assert not (sandbox.home / "journal.json").exists()
    assert_serves(sandbox.ui_port, sandbox.api_port)
    assert_closed(new_ui)


def test_install_with_other_options_points_to_configure(
    sandbox: Sandbox, ca: trustme.CA, tmp_path: Path
) -> None:
    installed(sandbox)
    same = sandbox.install("--no-demo")
    assert same.returncode == 0 and "already installed and running" in same.stdout
    other = free_port()
    result = sandbox.install("--no-demo", "--port", str(other))  # the last --port wins
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"UI port {sandbox.ui_port}, not {other}" in result.stderr
    assert (
        f"configure --port {other}" in result.stderr
        and "--api-port" not in result.stderr.split("configure")[1]
    )
    cert, key = issue(ca, tmp_path, *host_names())
    shared = sandbox.install("--listen", "0.0.0.0", "--ssl-cert-file", str(cert), "--ssl-key-file", str(key))
    assert shared.returncode == 2
    assert f"configure --listen 0.0.0.0 --ssl-cert-file {cert} --ssl-key-file {key}" in shared.stderr
    assert sandbox.state()["ui_port"] == sandbox.ui_port and sandbox.state()["listen"] == "127.0.0.1"


def test_sharing_without_a_certificate_is_refused_and_says_why(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo", "--listen", "0.0.0.0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "authlib" in result.stderr and "--ssl-cert-file" in result.stderr and "certbot" in result.stderr
    assert not sandbox.home.exists()
    installed(sandbox)
    refused = configure(sandbox, "--listen", "0.0.0.0", code=2)
    assert "needs HTTPS" in refused
    assert listening_addresses(sandbox)[sandbox.ui_port] == {"127.0.0.1"}


def test_a_receipt_that_shares_over_http_keeps_working_and_warns(sandbox: Sandbox) -> None:
    installed(sandbox, "--no-start")
    state = sandbox.state()
    state["listen"] = "0.0.0.0"  # what installs made before HTTPS was required look like
    (sandbox.home / "state.json").write_text(json.dumps(state))
    assert sandbox.run("start").returncode == 0
    host = sandbox.status()["ui_url"].split("//", 1)[1].rsplit(":", 1)[0]
    assert oauth_register(sandbox.api_port, "127.0.0.1", None) == 201
    assert oauth_register(sandbox.api_port, host, None) == 500  # what clients elsewhere meet
    status = sandbox.run("status")
    assert status.returncode == 0 and "shared over plain HTTP" in status.stderr
    assert any("plain HTTP" in warning for warning in sandbox.status()["warnings"])
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 3 and "FAIL HTTPS" in doctor.stdout.replace("  ", " ")
    moved = free_port()  # a port change keeps the team's setup as it was
    configure(sandbox, "--port", str(moved))
    assert sandbox.state()["listen"] == "0.0.0.0"


def test_a_certificate_that_expires_in_10_days_warns(
    sandbox: Sandbox, ca: trustme.CA, tmp_path: Path
) -> None:
    cert, key = issue(ca, tmp_path, "localhost", "127.0.0.1", days=10)
    installed(sandbox, "--ssl-cert-file", str(cert), "--ssl-key-file", str(key))
    status = sandbox.status()
    assert status["certificate_days_left"] in (9, 10)
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10)).date()
    assert status["certificate_expires"] in (
        expires.isoformat(),
        (expires - datetime.timedelta(1)).isoformat(),
    )
    text = sandbox.run("status")
    assert f"expires on {status['certificate_expires']}" in text.stdout
    assert "days left). Renew it" in text.stderr and "configure --ssl-cert-file" in text.stderr
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 3 and "Renew it" in doctor.stdout

    # The renewed certificate goes in with one restart, and the warning goes.
    renewed, renewed_key = issue(ca, tmp_path, "localhost", "127.0.0.1", days=90, tag="-renewed")
    argv_log = sandbox.home / "testgen/home/fake-argv.log"
    starts = argv_log.read_text().count('["run-app"]')
    configure(sandbox, "--ssl-cert-file", str(renewed), "--ssl-key-file", str(renewed_key))
    assert argv_log.read_text().count('["run-app"]') == starts + 1
    served = ssl.get_server_certificate(("127.0.0.1", sandbox.api_port))
    leaf = renewed.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(leaf)
    assert sandbox.status()["certificate_days_left"] in (89, 90) and sandbox.status()["warnings"] == []
    assert sandbox.run("doctor").returncode == 0


def test_a_certificate_for_another_name_warns(sandbox: Sandbox, ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = issue(ca, tmp_path, "testgen.other.example", "127.0.0.1")
    result = sandbox.install(
        "--no-demo", "--listen", "0.0.0.0", "--ssl-cert-file", str(cert), "--ssl-key-file", str(key)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    host = sandbox.status()["ui_url"].split("//", 1)[1].rsplit(":", 1)[0]
    assert f"does not cover {host}" in result.stderr and "testgen.other.example" in result.stderr
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 3 and f"does not cover {host}" in doctor.stdout


def test_expired_certificates_are_refused(sandbox: Sandbox, ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = issue(ca, tmp_path, "localhost", days=-1)
    result = sandbox.install("--no-demo", "--ssl-cert-file", str(cert), "--ssl-key-file", str(key))
    assert result.returncode == 2 and "expired on" in result.stderr
    assert not sandbox.home.exists()


def test_a_service_restarts_through_the_service_manager_with_the_new_settings(sandbox: Sandbox) -> None:
    installed(sandbox)
    env = with_systemctl(sandbox)
    assert sandbox.run("service", "enable", env=env).returncode == 0
    new_ui = free_port()
    output = configure(sandbox, "--port", str(new_ui), env=env)
    assert "'admin' logged in" in output
    assert calls(sandbox)[-2:] == [f"--user stop {UNIT}", f"--user start {UNIT}"]
    assert_serves(new_ui, sandbox.api_port)
    assert any(cmd.endswith(" run") for _, cmd in sandbox.processes()), "the service runs `run`"
    assert sandbox.run("service", "disable", env=env).returncode == 0


def test_a_chain_clients_cannot_verify_is_warned_about(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 15, item 7: the installer's probes pin its own certificate; what clients see (a full
    chain to a CA they trust) is checked apart, and a leaf without its CA is said."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "leaf-only.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    done = sandbox.install("--no-demo", "--ssl-cert-file", str(cert), "--ssl-key-file", str(key))
    assert done.returncode == 0, done.stdout + done.stderr
    [warning] = sandbox.status()["warnings"]
    assert "Clients cannot verify the HTTPS certificate" in warning
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 3 and "Clients cannot verify" in doctor.stdout
