"""Section 5, analytics: delivery to a Mixpanel stand-in, every opt-out, every network fault, the
spool, the sender's lifetime and lock, the circuit breaker, the notice, and the commands."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import INSTALLER, Sandbox
from faults import AcceptAndHang, SlowDrip, TlsNeverCompletes, dns_hang_site, refused_url, serving
from pytest_httpserver import HTTPServer

from dk_installer.analytics import (
    ENVIRONMENT_PROPERTIES,
    EVENT_SCHEMA,
    NOTICE_VERSION,
    SENDER_LIFETIME_S,
    SPOOL_MAX_BYTES,
    SPOOL_MAX_EVENTS,
    Spool,
    _utc_offset,
    allowed_properties,
    analytics_consent,
    environment_properties,
)
from dk_installer.config import SavedChoices, Settings
from dk_installer.paths import Paths
from dk_installer.testgen import config as testgen_config

NOTICE_MARK = "anonymous usage analytics"


def analytics_on(url: str) -> dict[str, str | None]:
    return {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_URL": url}


def analytics_dir(sandbox: Sandbox) -> Path:
    return sandbox.config / "dk-installer" / "analytics"


def spooled(sandbox: Sandbox) -> list[dict]:
    path = analytics_dir(sandbox) / "spool.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_requests(server: HTTPServer, count: int, timeout: float = 12) -> None:
    deadline = time.monotonic() + timeout
    while len(server.log) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.log) >= count, f"collector got {len(server.log)} request(s), expected {count}"


def wait_for_senders(sandbox: Sandbox, timeout: float = 12) -> float:
    """Wait until no detached sender of this sandbox runs; returns how long that took."""
    started = time.monotonic()
    while any("send-spool" in cmd for _, cmd in sandbox.processes()):
        assert time.monotonic() - started < timeout, "a sender outlived its 10 s limit"
        time.sleep(0.05)
    return time.monotonic() - started


def events_in(request_body: bytes) -> list[dict]:
    body = json.loads(request_body)
    assert isinstance(body, list)
    return body


@pytest.fixture
def collector(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/track", method="POST").respond_with_data("1")
    return httpserver


def collector_url(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")


def test_event_reaches_the_collector_in_mixpanel_format(sandbox: Sandbox, collector: HTTPServer) -> None:
    result = sandbox.run("status", env=analytics_on(collector_url(collector)))
    assert result.returncode == 0
    assert NOTICE_MARK in result.stderr
    wait_for_requests(collector, 1)
    request, _ = collector.log[0]
    assert request.path == "/track"
    assert request.args["ip"] == "0"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("dk-installer/")
    [event] = events_in(request.data)
    assert event["event"] == "status"
    props = event["properties"]
    assert set(props) == set(EVENT_SCHEMA) - {"context"}
    assert props["action"] == "status" and props["outcome"] == "success"
    assert props["first_run"] is True and props["schema"] == 1 and props["launched_by"] == "direct"
    assert len(props["$insert_id"]) == 32 and abs(props["time"] / 1000 - time.time()) < 120
    wait_for_senders(sandbox)
    assert spooled(sandbox) == []
    shown = sandbox.run("analytics", "show")
    assert shown.stdout.splitlines()[0].split() == [
        "time",
        "(UTC)",
        "event",
        "outcome",
        "error",
        "code",
        "delivery",
    ]
    assert shown.stdout.splitlines()[1].split()[2:] == ["status", "success", "-", "delivered"]
    raw = json.loads(sandbox.run("analytics", "show", "--json").stdout)
    assert [entry["delivery"] for entry in raw] == ["delivered"]
    assert raw[0]["event"]["properties"]["$insert_id"] == props["$insert_id"]


def test_one_event_per_action_and_first_run_only_once(sandbox: Sandbox, collector: HTTPServer) -> None:
    env = analytics_on(collector_url(collector))
    sandbox.run("status", env=env)
    wait_for_requests(collector, 1)
    wait_for_senders(sandbox)
    second = sandbox.run("doctor", "--json-does-not-exist", env=env)
    assert second.returncode == 2  # usage errors end before any action: no event
    third = sandbox.run("status", "--json", env=env)
    assert NOTICE_MARK not in third.stderr
    wait_for_requests(collector, 2)
    wait_for_senders(sandbox)
    events = [e for request, _ in collector.log for e in events_in(request.data)]
    assert [e["event"] for e in events] == ["status", "status"]
    assert [e["properties"]["first_run"] for e in events] == [True, False]
    assert events[1]["properties"]["options"] == ["json"]
    assert len({e["properties"]["distinct_id"] for e in events}) == 1


def test_help_version_and_analytics_commands_record_nothing(sandbox: Sandbox, collector: HTTPServer) -> None:
    env = analytics_on(collector_url(collector))
    for args in (
        ["--help"],
        ["--version"],
        ["install", "--help"],
        ["analytics", "status"],
        ["analytics", "preview"],
        ["analytics", "show"],
    ):
        assert sandbox.run(*args, env=env).returncode == 0, args
    time.sleep(1.5)
    assert collector.log == []
    assert spooled(sandbox) == []


@pytest.mark.parametrize(
    "args, env",
    [
        (["--no-analytics", "status"], {}),
        (["status", "--no-analytics"], {}),
        (["status"], {"DO_NOT_TRACK": "1"}),
        (["status"], {"DO_NOT_TRACK": "true"}),
        (["status"], {"DO_NOT_TRACK": "yes"}),
        (["status"], {"DK_INSTALLER_ANALYTICS": "no"}),
        (["status"], {"DK_INSTALLER_ANALYTICS": "false"}),
        (["status"], {"DK_INSTALLER_ANALYTICS": "0"}),
        (["status"], {"DK_INSTALLER_ANALYTICS": "OFF"}),
        (["status"], {"SAVED": "disable"}),
    ],
)
def test_every_opt_out_sends_nothing_writes_nothing_starts_nothing(
    sandbox: Sandbox, collector: HTTPServer, args: list[str], env: dict[str, str]
) -> None:
    full_env = {**analytics_on(collector_url(collector)), **env}
    if full_env.pop("SAVED", None):
        assert sandbox.run("analytics", "disable", env=full_env).returncode == 0
    result = sandbox.run(*args, env=full_env)
    assert result.returncode == 0
    assert NOTICE_MARK not in result.stderr
    assert not any("send-spool" in cmd for _, cmd in sandbox.processes())
    time.sleep(1.5)
    assert collector.log == []
    assert not analytics_dir(sandbox).exists()


def test_analytics_status_names_the_deciding_rule(sandbox: Sandbox) -> None:
    on = sandbox.run("analytics", "status", env={"DK_INSTALLER_ANALYTICS": None})
    assert "on (decided by: default)" in on.stdout
    off = sandbox.run("analytics", "status", env={"DK_INSTALLER_ANALYTICS": None, "DO_NOT_TRACK": "1"})
    assert "off (decided by: DO_NOT_TRACK)" in off.stdout
    sandbox.run("analytics", "disable")
    saved = sandbox.run("analytics", "status", env={"DK_INSTALLER_ANALYTICS": None})
    assert "off (decided by: saved setting" in saved.stdout
    flag = sandbox.run("--no-analytics", "analytics", "status", env={"DK_INSTALLER_ANALYTICS": None})
    assert "off (decided by: --no-analytics)" in flag.stdout


def test_disable_deletes_id_and_spool_and_sends_nothing(sandbox: Sandbox, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/track").respond_with_data("", status=500)
    env = analytics_on(collector_url(httpserver))
    sandbox.run("status", env=env)
    wait_for_requests(httpserver, 1)
    wait_for_senders(sandbox)
    assert len(spooled(sandbox)) == 1
    settings = json.loads((sandbox.config / "dk-installer/settings.json").read_text())
    assert "anonymous_id" in settings
    disabled = sandbox.run("analytics", "disable", env=env)
    assert disabled.returncode == 0
    assert spooled(sandbox) == []
    settings = json.loads((sandbox.config / "dk-installer/settings.json").read_text())
    assert "anonymous_id" not in settings and settings["analytics"] == "disabled"
    sandbox.run("status", env=env)
    time.sleep(1.5)
    assert len(httpserver.log) == 1
    enabled = sandbox.run("analytics", "enable", env=env)
    assert "enabled" in enabled.stdout


def test_failed_send_keeps_events_and_retries_them_with_the_same_insert_id(
    sandbox: Sandbox, httpserver: HTTPServer
) -> None:
    httpserver.expect_oneshot_request("/track").respond_with_data("", status=500)
    httpserver.expect_request("/track").respond_with_data("1")
    env = analytics_on(collector_url(httpserver))
    sandbox.run("status", env=env)
    wait_for_requests(httpserver, 1)
    wait_for_senders(sandbox)
    [first] = events_in(httpserver.log[0][0].data)
    assert [e["properties"]["$insert_id"] for e in spooled(sandbox)] == [first["properties"]["$insert_id"]]
    sandbox.run("status", env=env)
    wait_for_requests(httpserver, 2)
    wait_for_senders(sandbox)
    retried = events_in(httpserver.log[1][0].data)
    assert retried[0]["properties"]["$insert_id"] == first["properties"]["$insert_id"]
    assert len(retried) == 2
    assert spooled(sandbox) == []


def test_circuit_breaker_pauses_after_three_failures(sandbox: Sandbox, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/track").respond_with_data("", status=503)
    env = analytics_on(collector_url(httpserver))
    for attempt in range(1, 4):
        sandbox.run("status", env=env)
        wait_for_requests(httpserver, attempt)
        wait_for_senders(sandbox)
    sandbox.run("status", env=env)
    time.sleep(1.5)
    assert len(httpserver.log) == 3
    assert len(spooled(sandbox)) == 4
    status = sandbox.run("analytics", "status", env=env)
    assert "paused for 24 h" in status.stdout and "HTTP 503" in status.stdout


def test_collector_rejection_is_a_failure(sandbox: Sandbox, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/track").respond_with_data("0")
    sandbox.run("status", env=analytics_on(collector_url(httpserver)))
    wait_for_requests(httpserver, 1)
    wait_for_senders(sandbox)
    assert len(spooled(sandbox)) == 1


def run_timed(sandbox: Sandbox, env: dict[str, str | None]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = sandbox.run("status", env=env)
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    "condition",
    # dns_hang patches the sender through PYTHONPATH, which only the file (run without -I) reads.
    [
        "http_500",
        "http_429",
        "refused",
        "hang",
        "slow_drip",
        "tls_stall",
        pytest.param("dns_hang", marks=pytest.mark.single_file),
    ],
)
def test_network_faults_never_change_the_action(
    sandbox: Sandbox, httpserver: HTTPServer, tmp_path: Path, condition: str
) -> None:
    off, off_time = run_timed(sandbox, {})
    sandbox.run("analytics", "status")  # settings exist; the notice below is shown once
    env: dict[str, str | None] = {"DK_INSTALLER_ANALYTICS": None}
    servers = {"hang": AcceptAndHang, "slow_drip": SlowDrip, "tls_stall": TlsNeverCompletes}
    server = servers[condition]() if condition in servers else None
    if condition.startswith("http_"):
        httpserver.expect_request("/track").respond_with_data("", status=int(condition[5:]))
        env["DK_INSTALLER_ANALYTICS_URL"] = collector_url(httpserver)
    elif condition == "refused":
        env["DK_INSTALLER_ANALYTICS_URL"] = refused_url()
    elif condition == "dns_hang":
        site = dns_hang_site(tmp_path / "site")
        env.update(
            DK_INSTALLER_ANALYTICS_URL="http://collector.invalid:9", DNS_HANG="1", PYTHONPATH=str(site)
        )
    else:
        assert server is not None
        env["DK_INSTALLER_ANALYTICS_URL"] = server.url
    try:
        on, on_time = run_timed(sandbox, env)
        assert on.returncode == off.returncode == 0
        assert on.stdout == off.stdout
        assert on_time < off_time + 1.0, f"analytics added {on_time - off_time:.2f}s"
        assert wait_for_senders(sandbox) < 12
    finally:
        if server:
            server.close()
    assert len(spooled(sandbox)) == 1  # not delivered: kept for the next run
    if server:
        assert server.connections >= 1  # the sender really tried


def spool_one_event(sandbox: Sandbox) -> dict[str, str]:
    env = {**sandbox.env, "DK_INSTALLER_ANALYTICS_URL": refused_url()}
    env.pop("DK_INSTALLER_ANALYTICS")
    subprocess.run([sys.executable, str(INSTALLER), "status"], env=env, capture_output=True, check=True)
    wait_for_senders(sandbox)
    (analytics_dir(sandbox) / "sender.json").unlink()
    assert len(spooled(sandbox)) == 1
    return env


def start_sender(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(INSTALLER), "analytics", "send-spool"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_connected_sender(env: dict[str, str], server: AcceptAndHang) -> subprocess.Popen[bytes]:
    """A sender pointed at `server`, returned once it is connected (and holds the sender lock)."""
    env["DK_INSTALLER_ANALYTICS_URL"] = server.url
    sender = start_sender(env)
    deadline = time.monotonic() + 10
    while server.connections == 0:
        assert time.monotonic() < deadline, "the sender never connected"
        time.sleep(0.05)
    return sender


@pytest.mark.parametrize("condition", ["slow_drip", "dns_hang"])
def test_sender_kills_itself_after_ten_seconds(sandbox: Sandbox, tmp_path: Path, condition: str) -> None:
    env = spool_one_event(sandbox)
    server = SlowDrip() if condition == "slow_drip" else None
    if server:
        env["DK_INSTALLER_ANALYTICS_URL"] = server.url
    else:
        site = dns_hang_site(tmp_path / "site")
        env.update(
            DK_INSTALLER_ANALYTICS_URL="http://collector.invalid:9", DNS_HANG="1", PYTHONPATH=str(site)
        )
    started = time.monotonic()
    sender = start_sender(env)
    sender.wait(30)
    elapsed = time.monotonic() - started
    if server:
        server.close()
    assert sender.returncode == -14  # SIGALRM: the hard 10 s limit ended it
    assert 9.0 < elapsed < 12.5  # 10 s from the alarm, plus interpreter start-up on a busy machine
    assert len(spooled(sandbox)) == 1


def test_never_two_senders_at_once(sandbox: Sandbox) -> None:
    env = spool_one_event(sandbox)
    with serving(AcceptAndHang()) as server:
        first = start_connected_sender(env, server)
        started = time.monotonic()
        second = start_sender(env)
        second.wait(10)
        assert second.returncode == 0 and time.monotonic() - started < 5
        first.wait(20)
        assert server.connections == 1


def test_sender_not_started_while_one_runs(sandbox: Sandbox) -> None:
    """`status` while a sender runs (connected, holding the lock) starts no second one. The first
    sender ends itself after SENDER_LIFETIME_S: on a machine so busy that starting it and running
    `status` took that long, there was no running sender to respect, so that try is done again."""
    env = spool_one_event(sandbox)
    tries = 0
    while tries < 3:
        tries += 1
        with serving(AcceptAndHang()) as server:
            started = time.monotonic()
            first = start_connected_sender(env, server)
            result = subprocess.run([sys.executable, str(INSTALLER), "status"], env=env, capture_output=True)
            assert result.returncode == 0
            senders = [pid for pid, cmd in sandbox.processes() if "send-spool" in cmd]
            first_ran_throughout = first.poll() is None and time.monotonic() - started < SENDER_LIFETIME_S
            first.wait(20)
        wait_for_senders(sandbox)
        if first_ran_throughout:
            assert senders == [first.pid]
            break
    else:
        pytest.fail(f"three times, `status` took longer than a sender's {SENDER_LIFETIME_S} s life")
    assert len(spooled(sandbox)) == 1 + tries  # one event from each `status`


def test_corrupt_spool_and_unwritable_config_are_swallowed(
    sandbox: Sandbox, collector: HTTPServer, tmp_path: Path
) -> None:
    env = analytics_on(collector_url(collector))
    analytics_dir(sandbox).mkdir(parents=True)
    (analytics_dir(sandbox) / "spool.jsonl").write_text("{broken\n\x00\x01 not json\n")
    off = sandbox.run("status")
    on = sandbox.run("status", env=env)
    assert on.returncode == 0 and on.stdout == off.stdout
    wait_for_requests(collector, 1)
    assert [e["event"] for e in events_in(collector.log[0][0].data)] == ["status"]
    blocker = tmp_path / "config-is-a-file"
    blocker.write_text("")
    broken = sandbox.run("status", env={**env, "XDG_CONFIG_HOME": str(blocker)})
    assert broken.returncode == 0 and broken.stdout == off.stdout


def test_notice_is_shown_once_and_again_for_a_new_version(sandbox: Sandbox, collector: HTTPServer) -> None:
    env = analytics_on(collector_url(collector))
    first = sandbox.run("status", env=env)
    assert (
        NOTICE_MARK in first.stderr and "DO_NOT_TRACK=1" in first.stderr and "--no-analytics" in first.stderr
    )
    assert NOTICE_MARK not in sandbox.run("status", env=env).stderr
    settings_path = sandbox.config / "dk-installer/settings.json"
    settings = json.loads(settings_path.read_text())
    assert settings["notice_version"] == NOTICE_VERSION
    settings["notice_version"] = NOTICE_VERSION - 1
    settings_path.write_text(json.dumps(settings))
    assert NOTICE_MARK in sandbox.run("status", env=env).stderr


def test_preview_prints_the_payload_and_sends_nothing(sandbox: Sandbox, collector: HTTPServer) -> None:
    env = {**analytics_on(collector_url(collector)), "DK_INSTALLER_CONTEXT": "gitpod"}
    preview = sandbox.run("analytics", "preview", "doctor", env=env)
    assert preview.returncode == 0
    [event] = json.loads(preview.stdout)
    assert event["event"] == "doctor"
    assert set(event["properties"]) == set(EVENT_SCHEMA)
    assert event["properties"]["context"] == "gitpod"
    time.sleep(1)
    assert collector.log == []
    assert not (sandbox.config / "dk-installer").exists()


def test_debug_mode_prints_instead_of_sending(sandbox: Sandbox, collector: HTTPServer) -> None:
    env = {**analytics_on(collector_url(collector)), "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    result = sandbox.run("status", env=env)
    line = next(x for x in result.stderr.splitlines() if x.startswith("analytics debug (not sent): "))
    event = json.loads(line.split(": ", 1)[1])
    assert event["event"] == "status"
    time.sleep(1)
    assert collector.log == [] and spooled(sandbox) == []


def test_bootstrap_ping_once_for_install_sh(sandbox: Sandbox, collector: HTTPServer) -> None:
    env = {**analytics_on(collector_url(collector)), "DK_INSTALLER_LAUNCHED_BY": "install.sh"}
    sandbox.run("status", env=env)
    wait_for_requests(collector, 1)
    wait_for_senders(sandbox)
    sandbox.run("status", env=env)
    wait_for_requests(collector, 2)
    wait_for_senders(sandbox)
    first, second = (events_in(request.data) for request, _ in collector.log)
    assert [e["event"] for e in first] == ["bootstrap", "status"]
    assert set(first[0]["properties"]) <= set(ENVIRONMENT_PROPERTIES)
    assert "action" not in first[0]["properties"]
    assert first[1]["properties"]["launched_by"] == "install.sh"
    assert [e["event"] for e in second] == ["status"]


def test_ci_and_context_properties(sandbox: Sandbox) -> None:
    env = {
        "DK_INSTALLER_ANALYTICS": None,
        "DK_INSTALLER_ANALYTICS_DEBUG": "1",
        "GITHUB_ACTIONS": "true",
        "DK_INSTALLER_CONTEXT": "Not Valid/../home",
    }
    result = sandbox.run("status", env=env)
    event = json.loads(result.stderr.split("analytics debug (not sent): ", 1)[1].splitlines()[0])
    assert event["properties"]["ci"] is True and event["properties"]["ci_provider"] == "github_actions"
    assert "context" not in event["properties"]


def test_testgen_analytics_follow_the_installer(sandbox: Sandbox, collector: HTTPServer) -> None:
    assert sandbox.install("--no-demo").returncode == 0
    config = (sandbox.home / "testgen/home/config.env").read_text()
    assert "TG_ANALYTICS=no" in config and "TG_ANALYTICS=yes" not in config
    seen = (sandbox.home / "testgen/home/fake-analytics.log").read_text()
    assert "run-app TG_ANALYTICS env=no" in seen
    assert sandbox.run("uninstall", "--yes").returncode == 0
    on = sandbox.install("--no-demo", env=analytics_on(collector_url(collector)))
    assert on.returncode == 0
    config = testgen_config.TestGenConfig(sandbox.home / "testgen/home/config.env").read()
    assert config["TG_ANALYTICS"] == "yes"
    status = sandbox.run("analytics", "status", env=analytics_on(collector_url(collector))).stdout
    assert "TestGen's own:  on (config.env: TG_ANALYTICS=yes)" in status
    disabled = sandbox.run("analytics", "disable")
    assert disabled.returncode == 0
    assert "TG_ANALYTICS=no" in (sandbox.home / "testgen/home/config.env").read_text()
    wait_for_senders(sandbox)


def events_from_testgen(server: HTTPServer) -> list[dict]:
    """TestGen's own events among what the collector got: form-encoded data=<base64 JSON>."""
    found = []
    for request, _ in server.log:
        if request.content_type == "application/x-www-form-urlencoded":
            assert request.args.get("ip") == "1"  # TestGen asks Mixpanel for geolocation: README says so
            found += json.loads(base64.b64decode(request.form["data"]))
    return found


def test_testgen_events_go_to_the_self_hosted_collector_with_the_installer_made_id(
    sandbox: Sandbox, collector: HTTPServer
) -> None:
    env = analytics_on(collector_url(collector))
    off = sandbox.install("--no-demo", "--no-analytics", env=env)
    assert off.returncode == 0, off.stderr
    assert collector.log == [], "with --no-analytics nothing at all may reach the collector"
    assert sandbox.run("uninstall", "--yes", "--no-analytics", env=env).returncode == 0

    on = sandbox.install("--no-demo", env=env)
    assert on.returncode == 0, on.stderr
    instance_id = testgen_config.TestGenConfig(sandbox.home / "testgen/home/config.env").read()[
        "TG_INSTANCE_ID"
    ]
    assert re.fullmatch(r"[0-9a-f]{16}", instance_id)
    wait_for_requests(collector, 2)
    [event] = events_from_testgen(collector)
    assert event["event"] == "standalone_setup" and event["properties"]["instance_id"] == instance_id
    wait_for_senders(sandbox)


def test_spool_caps_count_size_and_age(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path / "home", config=tmp_path)
    spool = Spool(paths)
    now = int(time.time() * 1000)

    def event(i: int, age_days: float = 0, padding: int = 0) -> dict:
        return {
            "event": "status",
            "properties": {
                "time": now - int(age_days * 86400000),
                "$insert_id": f"{i:032x}",
                "pad": "x" * padding,
            },
        }

    spool.append([event(i) for i in range(150)])
    kept = spool.pending()
    assert len(kept) == SPOOL_MAX_EVENTS
    assert kept[-1]["properties"]["$insert_id"] == f"{149:032x}"
    spool.append([event(1000 + i, padding=10_000) for i in range(40)])
    assert paths.spool.stat().st_size <= SPOOL_MAX_BYTES
    assert spool.pending()[-1]["properties"]["$insert_id"] == f"{1039:032x}"
    spool.remove({e["properties"]["$insert_id"] for e in spool.pending()})
    spool.append([event(1, age_days=6), event(2, age_days=4)])
    assert [e["properties"]["$insert_id"] for e in spool.pending()] == [f"{2:032x}"]
    assert oct(paths.spool.stat().st_mode & 0o777) == "0o600"


def test_allow_list_drops_unknown_keys_and_bad_values() -> None:
    clean = allowed_properties(
        {
            "action": "install",
            "password": "x",
            "error_type": "not an/identifier",
            "options": ["port", "/etc/passwd"],
            "outcome": "weird",
        }
    )
    assert clean == {"action": "install", "error_type": None, "options": None, "outcome": None}


def test_missing_distro_is_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distro", None)
    props = environment_properties("9a9b4cb3-3171-4f2f-b941-d42afed1986a", Settings())
    assert props["os_distro"] is None and props["os"] == "Linux"


def test_consent_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    paths = Paths(home=tmp_path / "home", config=tmp_path / "config")
    for name in ("DO_NOT_TRACK", "DK_INSTALLER_ANALYTICS"):
        monkeypatch.delenv(name, raising=False)
    SavedChoices(paths.saved_choices).update(analytics="enabled")

    def consent(flag: bool) -> tuple[bool, str]:
        return analytics_consent(paths, Settings.from_environment(), flag)

    assert consent(False) == (True, "saved setting (analytics enable)")
    monkeypatch.setenv("DK_INSTALLER_ANALYTICS", "off")
    assert consent(False) == (False, "DK_INSTALLER_ANALYTICS")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert consent(False) == (False, "DO_NOT_TRACK")
    assert consent(True) == (False, "--no-analytics")
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    monkeypatch.setenv("DK_INSTALLER_ANALYTICS", "yes")
    assert consent(False)[0] is True


def test_utc_offset_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert _utc_offset() == "+05:30"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert os.environ.get("TZ") is None


def test_bootstrap_ping_is_not_repeated_after_direct_runs(sandbox: Sandbox) -> None:
    debug = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}

    def events(launcher: str) -> list[str]:
        result = sandbox.run("status", env={**debug, "DK_INSTALLER_LAUNCHED_BY": launcher})
        return [
            json.loads(line.split(": ", 1)[1])["event"]
            for line in result.stderr.splitlines()
            if line.startswith("analytics debug (not sent): ")
        ]

    # Debug mode records nothing, so the marker is set through a real (spooled) run first.
    env = {
        "DK_INSTALLER_ANALYTICS": None,
        "DK_INSTALLER_ANALYTICS_URL": refused_url(),
        "DK_INSTALLER_LAUNCHED_BY": "install.sh",
    }
    sandbox.run("status", env=env)
    wait_for_senders(sandbox)
    assert [e["event"] for e in spooled(sandbox)] == ["bootstrap", "status"]
    assert events("direct") == ["status"]
    sandbox.run("status", env={**env, "DK_INSTALLER_LAUNCHED_BY": "direct"})
    wait_for_senders(sandbox)
    assert events("install.sh") == ["status"]
