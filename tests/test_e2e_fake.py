"""End-to-end runs of the real installer (subprocesses, real uv installs, real processes) against
the stand-in TestGen wheel."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Sandbox
from faults import FaultServer, serving

from dk_installer.errors import InstallerError
from dk_installer.testgen.login import oauth_login


def test_full_lifecycle(sandbox: Sandbox) -> None:
    result = sandbox.install("--version", "5.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    for step in (
        "Check requirements",
        "Install TestGen",
        "Configure TestGen",
        "Load demo data",
        "Start TestGen",
        "Verify the login",
        "Record the install",
    ):
        assert f"OK      {step}" in result.stdout
    state = sandbox.state()
    assert state["product_version"] == "5.0.0"
    assert state["package_engine"] == "uv"
    assert state["ui_port"] == sandbox.ui_port
    credentials = sandbox.home / "credentials.txt"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    password = sandbox.password()
    assert len(password) >= 16
    assert password not in result.stdout + result.stderr  # not a terminal: never printed
    assert password not in (sandbox.home / "testgen/home/fake-argv.log").read_text()
    assert "'admin' logged in" in result.stdout
    assert (sandbox.home / "testgen/home/demo-loaded").exists()

    status = sandbox.status()
    assert status["installed"] and status["running"] and status["version"] == "5.0.0"
    assert status["health"] == {"ui": True, "api": True}

    stopped = sandbox.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert sandbox.processes() == []
    assert sandbox.status()["running"] is False

    started = sandbox.run("start")
    assert started.returncode == 0, started.stderr
    assert sandbox.status()["running"] is True

    upgraded = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "upgraded from 5.0.0 to 5.1.0" in upgraded.stdout
    assert sandbox.state()["product_version"] == "5.1.0"
    assert (sandbox.home / "testgen/home/schema-version").read_text().strip() == "5.1.0"
    assert sandbox.status()["running"] is True
    assert len(list((sandbox.home / "testgen/venvs").iterdir())) == 1

    removed = sandbox.run("uninstall", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert sandbox.processes() == []
    assert not sandbox.home.exists()


def test_rerun_on_healthy_install_is_idempotent(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo").returncode == 0
    started = time.monotonic()
    again = sandbox.install("--no-demo")
    assert again.returncode == 0, again.stderr
    assert "already installed and running" in again.stdout
    assert time.monotonic() - started < 30
    assert "Install TestGen" not in again.stdout


def test_rerun_when_stopped_points_to_start(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    again = sandbox.install("--no-demo")
    assert again.returncode == 0
    assert "not running" in again.stdout and " start" in again.stdout


def test_port_in_use_is_named_and_nothing_installed(sandbox: Sandbox) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", sandbox.ui_port))
        busy.listen()
        result = sandbox.install()
    assert result.returncode == 3
    assert f"UI port {sandbox.ui_port}" in result.stdout + result.stderr
    assert "--port" in result.stdout
    assert f"already in use by pid {os.getpid()} (" in result.stdout
    assert not (sandbox.home / "testgen").exists()
    assert not (sandbox.home / "state.json").exists()


def test_a_busy_port_at_start_says_what_helps_there(sandbox: Sandbox) -> None:
    """Issue 15, item 14a: `start`, `run` and `doctor` have no --port; the port is the install's."""
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", sandbox.ui_port))
        busy.listen()
        outputs = [
            sandbox.run("start"),
            sandbox.run("run"),
            sandbox.run("doctor", env={"UV_INDEX_URL": "http://127.0.0.1:9/simple"}),
        ]
    for result in outputs:
        assert result.returncode == 3, result.stdout + result.stderr
        line = next(line for line in (result.stdout + result.stderr).splitlines() if "UI port" in line)
        assert "stop what holds it" in line and "--port" not in line, line
        assert f"by pid {os.getpid()} (" in line, line  # who holds it: this test's own socket
    assert sandbox.processes() == []


def test_bad_port_values_are_usage_errors(sandbox: Sandbox) -> None:
    for value in ("abc", "0", "70000"):
        result = sandbox.run("install", "--port", value)
        assert result.returncode == 2, value
        assert "--port" in result.stderr
    same = sandbox.run("install", "--port", "9000", "--api-port", "9000")
    assert same.returncode == 2


def test_home_not_writable(sandbox: Sandbox, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = sandbox.install(env={"DK_INSTALLER_HOME": str(blocker / "home")})
    assert result.returncode == 3
    assert "Installer home writable" in result.stdout


def test_a_home_path_postgresql_cannot_take_is_refused_before_anything_is_written(sandbox: Sandbox) -> None:
    """Issue 15 item 8: with a space in the home, preflight passed and Configure then failed
    inside PostgreSQL (pgserver passes the data path unquoted). Refused up front, with a path
    that works, and the home is never made (no lock, no run log)."""
    parent = sandbox.root / "my hömé"
    home = parent / "dk"
    env = {"DK_INSTALLER_HOME": str(home)}
    result = sandbox.install(env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"Installer home path: '{home}' has a space and non-ASCII characters" in result.stderr
    assert f"DK_INSTALLER_HOME={sandbox.root}/dk-installer" in result.stderr
    doctor = sandbox.run("doctor", env=env)
    assert doctor.returncode == 3 and "Installer home path" in doctor.stdout
    assert not parent.exists()
    # The suggested home works.
    suggested = {"DK_INSTALLER_HOME": str(sandbox.root / "dk-installer")}
    done = sandbox.install("--no-demo", env=suggested)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sandbox.run("uninstall", "--yes", env=suggested).returncode == 0


def test_disk_too_small(sandbox: Sandbox) -> None:
    result = sandbox.install(env={"DK_INSTALLER_MIN_FREE_BYTES": str(10**15)})
    assert result.returncode == 3
    assert "Free disk space" in result.stdout and "GB needed" in result.stdout
    assert not (sandbox.home / "testgen").exists()


def test_unreachable_index_names_the_index_and_the_ways_out(sandbox: Sandbox) -> None:
    dead = f"http://127.0.0.1:{__import__('conftest').free_port()}/simple"
    result = sandbox.run(
        "install",
        "--index-url",
        dead,
        "--port",
        str(sandbox.ui_port),
        "--api-port",
        str(sandbox.api_port),
        "--no-browser",
    )
    assert result.returncode == 1
    assert dead in result.stderr
    assert "--index-url" in result.stderr and "HTTPS_PROXY" in result.stderr
    assert not (sandbox.home / "testgen").exists()


def test_package_not_found(sandbox: Sandbox) -> None:
    result = sandbox.install("--version", "9.9.9")
    assert result.returncode == 1
    assert "not available" in result.stderr and "--find-links" in result.stderr
    assert not (sandbox.home / "testgen" / "venv").exists()
    assert list((sandbox.home / "testgen").glob("venvs/*")) == []


def test_setup_failure_rolls_everything_back(sandbox: Sandbox) -> None:
    result = sandbox.install(env={"FAKE_TESTGEN_FAIL": "standalone-setup"})
    assert result.returncode == 1
    assert "FAILED  Configure TestGen" in result.stdout
    assert "fake failure in standalone-setup" in result.stderr  # the failing command's stderr
    assert "Full log:" in result.stderr
    assert not (sandbox.home / "state.json").exists()
    assert not (sandbox.home / "credentials.txt").exists()
    assert not (sandbox.home / "testgen" / "home").exists()
    assert not (sandbox.home / "testgen" / "venv").exists()
    retry = sandbox.install("--no-demo")
    assert retry.returncode == 0, retry.stderr


def test_a_failure_headline_shows_the_childs_error_not_its_last_words(sandbox: Sandbox) -> None:
    """Issue 15 item 6: TestGen logs pgserver's failure on stdout while getpass's warnings are
    all its stderr holds; the screen showed only those warnings."""
    result = sandbox.install(env={"FAKE_TESTGEN_FAIL": "postgres"})
    assert result.returncode == 1
    headline = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "testgen standalone-setup failed (exit code 1)" in headline
    assert 'FATAL:  could not create lock file "postmaster.pid"' in headline
    assert "Failed to start server." in result.stderr  # what led to it, under the headline


def writable_by_others(*tops: Path) -> list[str]:
    """Files and folders (not symlinks, whose mode means nothing) that group or others can write."""
    found = []
    for top in tops:
        for folder, dirs, files in os.walk(top):
            for path in [folder] + [os.path.join(folder, name) for name in dirs + files]:
                info = os.lstat(path)
                if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022:
                    found.append(f"{stat.filemode(info.st_mode)} {path}")
    return sorted(set(found))


def test_umask_000_leaves_nothing_writable_by_others(sandbox: Sandbox) -> None:
    """Issue 15 item 6: a user's `umask 000` made the installer home, TestGen's code and the logs
    world-writable (another local user could replace code or plant a journal), and PostgreSQL then
    refused its data. uv also makes its lock files 0666 whatever the umask."""
    result = sandbox.install(umask=0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sandbox.run("stop", umask=0).returncode == 0
    assert sandbox.run("start", umask=0).returncode == 0
    assert writable_by_others(sandbox.home, sandbox.config, sandbox.user_home) == []
    assert (sandbox.home / "credentials.txt").stat().st_mode & 0o777 == 0o600


def test_demo_failure_does_not_fail_the_install(sandbox: Sandbox) -> None:
    result = sandbox.install(env={"FAKE_TESTGEN_FAIL": "quick-start"})
    assert result.returncode == 0, result.stderr
    assert "FAILED  Load demo data" in result.stdout
    assert "fake failure in quick-start" in result.stderr
    assert sandbox.status()["running"] is True


def test_app_that_dies_on_start_shows_its_log_and_rolls_back(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo", env={"FAKE_TESTGEN_CRASH_ON_START": "1"})
    assert result.returncode == 1
    assert "fatal: the UI could not start" in result.stderr
    assert sandbox.processes() == []
    assert not (sandbox.home / "state.json").exists()


def test_failed_login_fails_the_install_and_stops_the_app(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo", env={"FAKE_TESTGEN_REJECT_LOGIN": "1"})
    assert result.returncode == 1
    assert "FAILED  Verify the login" in result.stdout
    assert "rejected the login" in result.stderr
    assert sandbox.processes() == []


def test_no_login_endpoint_is_reported_not_pretended(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo", env={"FAKE_TESTGEN_NO_OAUTH": "1"})
    assert result.returncode == 0
    assert "SKIPPED Verify the login" in result.stdout
    assert "no login endpoint" in result.stdout


class HangsUp(FaultServer):
    """Reads the request and closes the connection without an answer: TestGen's API dying."""

    def behave(self, connection: socket.socket) -> None:
        connection.recv(65536)


def test_an_api_that_hangs_up_during_the_login_check_is_named() -> None:
    with serving(HangsUp()) as api, pytest.raises(InstallerError) as raised:
        oauth_login(api.url, None, "admin", "a-password")
    assert raised.value.code.value == "login_failed"
    assert f"TestGen's API at {api.url} stopped answering during the login check" in raised.value.message
    assert "a-password" not in raised.value.message


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_sigterm_during_configure_undoes_it_and_rerun_succeeds(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    process = sandbox.popen(
        *sandbox.install_args(),
        env={"FAKE_TESTGEN_HANG": "standalone-setup", "FAKE_TESTGEN_HANG_MARKER": str(marker)},
    )
    wait_for(marker)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "Interrupted" in err
    assert sandbox.processes() == []
    assert not (sandbox.home / "testgen" / "venv").exists()
    assert not (sandbox.home / "testgen" / "home").exists()
    assert sandbox.install("--no-demo").returncode == 0


def test_second_mutating_command_is_refused_while_one_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    process = sandbox.popen(
        *sandbox.install_args(),
        env={"FAKE_TESTGEN_HANG": "quick-start", "FAKE_TESTGEN_HANG_MARKER": str(marker)},
    )
    wait_for(marker)
    refused = sandbox.run("start")
    assert refused.returncode == 1
    assert "install (pid" in refused.stderr
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130


def test_corrupt_state_is_explained_and_repaired(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    (sandbox.home / "state.json").write_text("{not json")
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 3
    assert "Install receipt" in doctor.stdout and "rebuilds it" in doctor.stdout
    assert sandbox.run("status").returncode == 1
    repaired = sandbox.install("--no-demo", "--no-start")
    assert repaired.returncode == 0, repaired.stderr
    assert "rebuilt" in repaired.stderr
    assert sandbox.state()["product_version"] == "5.1.0"


def test_hand_edited_state_with_wrong_types_is_detected(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    state = sandbox.state()
    state["ui_port"] = "eighty"
    (sandbox.home / "state.json").write_text(__import__("json").dumps(state))
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 3 and "ui_port" in doctor.stdout


def test_upgrade_failure_restores_the_previous_install(sandbox: Sandbox) -> None:
    assert sandbox.install("--version", "5.0.0", "--no-demo").returncode == 0
    failed = sandbox.run(
        "upgrade",
        "--find-links",
        str(sandbox.wheelhouse),
        env={"FAKE_TESTGEN_FAIL": "upgrade-system-version"},
    )
    assert failed.returncode == 1
    assert "FAILED  Upgrade TestGen's database" in failed.stdout
    assert sandbox.state()["product_version"] == "5.0.0"
    status = sandbox.status()
    assert status["running"] is True and status["version"] == "5.0.0"
    assert len(list((sandbox.home / "testgen/venvs").iterdir())) == 1
    assert not (sandbox.home / "testgen/home.backup").exists()
    # The failed migration had changed data; the rollback put the backed-up data back.
    assert not (sandbox.home / "testgen/home/pgdata/half-upgraded").exists()


def test_a_killed_setup_leaves_its_postgresql_running_like_the_real_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The stand-in's own contract: a command registers in .handle_pids.json and PostgreSQL outlives
    a SIGKILL of it; a command that ends normally stops PostgreSQL when it is the last handle."""
    marker = tmp_path / "setup.pid"
    process = sandbox.popen(
        *sandbox.install_args("--no-demo"),
        env={"FAKE_TESTGEN_HANG": "standalone-setup", "FAKE_TESTGEN_HANG_MARKER": str(marker)},
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    setup_pid = int(marker.read_text())
    pgdata = sandbox.home / "testgen/home/pgdata"
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == [setup_pid]
    process.kill()
    process.communicate(timeout=30)
    os.kill(setup_pid, signal.SIGKILL)
    time.sleep(0.5)
    assert any("fake_postgres.py" in cmd for _, cmd in sandbox.processes()), "PostgreSQL outlives the kill"
    assert sandbox.install("--no-demo").returncode == 0  # recovery stops it, the re-run succeeds
    assert sandbox.run("stop").returncode == 0
    assert sandbox.processes() == []


def test_stop_sweeps_orphans_of_a_killed_app(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo").returncode == 0
    pid = int((sandbox.home / "testgen/app.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    assert any("fake_postgres.py" in cmd for _, cmd in sandbox.processes())
    stopped = sandbox.run("stop")
    assert stopped.returncode == 0
    assert sandbox.processes() == []


def test_stop_leaves_a_testgen_the_user_runs_alone(sandbox: Sandbox) -> None:
    """A `testgen` the user starts from the installed venv (e.g. from cron) is not ours to stop."""
    assert sandbox.install("--no-demo").returncode == 0
    venv_python = sandbox.home / "testgen/venv/bin/python"
    users = subprocess.Popen(
        [str(venv_python), "-c", "import time; time.sleep(60)", str(sandbox.home / "testgen")],
        env={**sandbox.env, "TG_TESTGEN_HOME": str(sandbox.home / "testgen/home")},
    )
    try:
        stopped = sandbox.run("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert users.poll() is None, "stop killed a process the installer did not start"
        assert [pid for pid, _ in sandbox.processes()] == [users.pid]
    finally:
        users.kill()
        users.wait()


def test_uninstall_keep_data_then_reinstall_reuses_it(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo").returncode == 0
    password = sandbox.password()
    assert sandbox.run("uninstall", "--yes", "--keep-data").returncode == 0
    assert (sandbox.home / "testgen/home/config.env").exists()
    assert not (sandbox.home / "testgen/venv").exists()
    again = sandbox.install("--no-demo")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kept the existing TestGen data" in again.stdout
    assert sandbox.password() == password
    assert "'admin' logged in" in again.stdout


def test_uninstall_needs_yes_without_a_terminal(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    result = sandbox.run("uninstall")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert (sandbox.home / "state.json").exists()


def test_pip_fallback(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo", "--no-start", env={"DK_INSTALLER_PACKAGE_ENGINE": "pip"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert sandbox.state()["package_engine"] == "pip"


def test_no_analytics_flag_works_before_and_after_the_command(sandbox: Sandbox) -> None:
    assert sandbox.run("--no-analytics", "status").returncode == 0
    assert sandbox.run("status", "--no-analytics").returncode == 0
    assert sandbox.run("doctor", "--no-analytics", "--verbose").returncode in (0, 3)


def test_nothing_is_written_outside_the_two_directories(sandbox: Sandbox) -> None:
    env: dict[str, str | None] = {"UV_CACHE_DIR": None}
    before = set(sandbox.root.rglob("*"))
    assert sandbox.install("--no-demo", env=env).returncode == 0
    assert sandbox.run("stop").returncode == 0
    written = {p for p in set(sandbox.root.rglob("*")) - before}
    # Exactly README's list: the two folders (and in them only what README names), plus the launcher.
    launcher = sandbox.user_home / ".local/bin/dk-installer"
    settings = sandbox.config / "dk-installer"
    allowed = {launcher, launcher.parent, launcher.parent.parent, sandbox.config}
    outside = [
        p
        for p in written
        if not (p == sandbox.home or sandbox.home in p.parents or p == settings or settings in p.parents)
        and p not in allowed
    ]
    assert outside == []
    assert launcher in written
    readme_names = {"runtime", "testgen", "state.json", "credentials.txt", "logs", "cache", "journal.json"}
    readme_names |= {"tmp", "backups", "pythons", "dk_installer.py", ".lock"}
    assert {p.name for p in sandbox.home.iterdir()} <= readme_names
    assert {p.name for p in (sandbox.home / "testgen").iterdir()} <= {
        "venv",
        "venvs",
        "home",
        "run",
        "app.pid",
    }
    if settings.exists():  # analytics are off in the sandbox: nothing may be there at all
        assert {p.name for p in settings.iterdir()} <= {"settings.json", "analytics"}


def test_upgrade_after_the_password_was_changed_in_testgen_succeeds_and_says_so(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--version", "5.0.0").returncode == 0
    changed = subprocess.run(
        [str(sandbox.home / "testgen/venv/bin/testgen"), "fake-set-password", "admin"],
        input="a-new-password-set-in-the-ui\n",
        env={**sandbox.env, "TG_TESTGEN_HOME": str(sandbox.home / "testgen/home")},
        capture_output=True,
        text=True,
    )
    assert changed.returncode == 0, changed.stderr
    debug = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    upgraded = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse), env=debug)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "upgraded from 5.0.0 to 5.1.0" in upgraded.stdout
    assert "SKIPPED Verify the login" in upgraded.stdout and "no longer works" in upgraded.stdout
    assert str(sandbox.home / "credentials.txt") in upgraded.stdout
    event = json.loads(upgraded.stderr.split("analytics debug (not sent): ")[-1].splitlines()[0])
    assert event["properties"]["outcome"] == "success" and event["properties"]["login_success"] is False
    assert sandbox.status()["health"] == {"ui": True, "api": True}


def test_a_proxy_in_the_environment_never_sees_the_local_probes(sandbox: Sandbox) -> None:
    """HTTP_PROXY set without NO_PROXY (common on corporate machines): TestGen on this machine is
    still probed directly, so install and status see it answer."""
    proxy = {
        "HTTP_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "NO_PROXY": None,
        "no_proxy": None,
    }
    result = sandbox.install("--no-demo", env=proxy)
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(sandbox.run("status", "--json", env=proxy).stdout)
    assert status["health"] == {"ui": True, "api": True}
