"""Faults as a matrix: every step of install, upgrade, start, stop and uninstall x every way to
die, then a plain re-run of the same command, which must succeed and leave nothing behind (no
stray process, staging venv, safety copy, journal or half-written file). Steps are stopped inside
with the installer's failpoint hook (DK_INSTALLER_FAILPOINT); TestGen's own commands are stopped
mid-way with the stand-in's FAKE_TESTGEN_HANG."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import INSTALLER, Sandbox, wait_for_line

INSTALL_STEPS = (
    "preflight",
    "package_engine",
    "download_python",
    "install_package",
    "backup_data",
    "configure",
    "tls",
    "demo_data",
    "start",
    "verify_login",
    "save_state",
)
UPGRADE_STEPS = (
    "package_engine",
    "download_python",
    "install_package",
    "check_version",
    "stop",
    "backup_data",
    "swap_venv",
    "upgrade_database",
    "restart",
    "verify_login",
    "save_state",
)
STEPS = {
    "install": INSTALL_STEPS,
    "upgrade": UPGRADE_STEPS,
    "start": ("start",),
    "stop": ("stop",),
    "uninstall": ("stop", "remove_files"),
}
DEATHS = {
    "SIGKILL": signal.SIGKILL,
    "SIGHUP": signal.SIGHUP,
    "SIGTERM": signal.SIGTERM,
    "SIGINT": signal.SIGINT,
}
# SIGKILL (nothing runs after it) and SIGHUP (a dropped SSH session) everywhere; Ctrl+C and SIGTERM,
# which take the same handler as SIGHUP, through every step of install.
CASES = [
    (action, step, death)
    for action, steps in STEPS.items()
    for step in steps
    for death in (
        ("SIGKILL", "SIGHUP", "SIGTERM", "SIGINT") if action == "install" else ("SIGKILL", "SIGHUP")
    )
]


def command(sandbox: Sandbox, action: str) -> list[str]:
    if action == "install":
        return sandbox.install_args("--no-demo", "--version", "5.0.0")
    if action == "upgrade":
        return ["upgrade", "--find-links", str(sandbox.wheelhouse)]
    if action == "uninstall":
        return ["uninstall", "--yes"]
    return [action]


def prepare(sandbox: Sandbox, action: str) -> None:
    if action == "install":
        return
    extra = ("--no-start",) if action == "start" else ()
    done = sandbox.install("--no-demo", "--version", "5.0.0", *extra)
    assert done.returncode == 0, done.stdout + done.stderr


def assert_clean(sandbox: Sandbox) -> None:
    home = sandbox.home
    assert not (home / "journal.json").exists()
    assert not (home / "testgen/home.backup").exists()
    assert not list(home.rglob(".*.tmp")), "a half-written file was left"
    venvs = home / "testgen/venvs"
    assert len(list(venvs.iterdir())) <= 1 if venvs.exists() else True, "a staging venv was left"


def assert_outcome(sandbox: Sandbox, action: str, rerun: subprocess.CompletedProcess[str]) -> None:
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output
    assert_clean(sandbox)
    if action in ("install", "upgrade"):
        assert "'admin' logged in" in rerun.stdout, output
        status = sandbox.status()
        assert status["running"] and status["health"] == {"ui": True, "api": True}
        expected = "5.0.0" if action == "install" else "5.1.0"
        assert sandbox.state()["product_version"] == expected
        if action == "upgrade":
            assert (sandbox.home / "testgen/home/schema-version").read_text().strip() == expected
    elif action == "start":
        assert sandbox.status()["running"]
    elif action == "stop":
        assert sandbox.processes() == []
    else:
        assert not sandbox.home.exists()
        assert sandbox.processes() == []


@pytest.mark.parametrize("action, step, death", CASES, ids=[f"{a}-{s}-{d}" for a, s, d in CASES])
def test_killed_in_any_step_then_a_plain_rerun_succeeds(
    sandbox: Sandbox, action: str, step: str, death: str
) -> None:
    prepare(sandbox, action)
    args = command(sandbox, action)
    process = sandbox.popen(*args, env={"DK_INSTALLER_FAILPOINT": step})
    wait_for_line(process, f"failpoint {step}")
    process.send_signal(DEATHS[death])
    out, err = process.communicate(timeout=180)
    if death == "SIGKILL":
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, out + err
        assert "Interrupted" in err
        assert not (sandbox.home / "journal.json").exists(), "a rolled-back action leaves no journal"
    assert_outcome(sandbox, action, sandbox.run(*args))


@pytest.mark.parametrize(
    "action, command_name, step",
    [
        ("install", "standalone-setup", "configure"),
        ("upgrade", "upgrade-system-version", "upgrade_database"),
        ("start", "run-app", "start"),
    ],
)
def test_killed_while_testgen_works_leaves_no_orphans_and_rerun_succeeds(
    sandbox: Sandbox, tmp_path: Path, action: str, command_name: str, step: str
) -> None:
    prepare(sandbox, action)
    marker = tmp_path / "hanging.pid"
    args = command(sandbox, action)
    hang = {"FAKE_TESTGEN_HANG": command_name, "FAKE_TESTGEN_HANG_MARKER": str(marker)}
    process = sandbox.popen(*args, env=hang)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), f"testgen {command_name} never started"
    process.kill()
    process.communicate(timeout=60)
    assert any(str(sandbox.home) in cmd for _, cmd in sandbox.processes()), "the kill should leave orphans"
    rerun = sandbox.run(*args)
    assert "An interrupted" in rerun.stderr and f"step '{step}'" in rerun.stderr
    assert_outcome(sandbox, action, rerun)


def test_status_and_doctor_report_an_interrupted_install_and_change_nothing(sandbox: Sandbox) -> None:
    process = sandbox.popen(*command(sandbox, "install"), env={"DK_INSTALLER_FAILPOINT": "start"})
    wait_for_line(process, "failpoint start")
    assert sandbox.status()["interrupted_action"] is None, "a running install is not an interrupted one"
    process.kill()
    process.communicate(timeout=60)
    journal = (sandbox.home / "journal.json").read_text()
    status = sandbox.run("status")
    assert status.returncode == 0
    assert (
        "An interrupted `install` was found" in status.stderr and "dk_installer.py install" in status.stderr
    )
    assert sandbox.status()["interrupted_action"] == "install"
    doctor = sandbox.run("doctor")
    assert doctor.returncode == 3
    assert "No interrupted command" in doctor.stdout and "an interrupted `install` was found" in doctor.stdout
    assert (sandbox.home / "journal.json").read_text() == journal
    assert_outcome(sandbox, "install", sandbox.run(*command(sandbox, "install")))


def test_home_broken_by_an_earlier_installer_is_recognised(sandbox: Sandbox) -> None:
    """What a killed `standalone-setup` left before the journal existed: config.env, no receipt,
    no credentials. The old installer then ran upgrade-system-version on it and failed forever."""
    prepare(sandbox, "stop")
    assert sandbox.run("stop").returncode == 0
    (sandbox.home / "state.json").unlink()
    (sandbox.home / "credentials.txt").unlink()
    assert "interrupted" in sandbox.run("status").stderr
    rerun = sandbox.run(*command(sandbox, "install"))
    assert "removed the half-made TestGen home of an earlier installer" in rerun.stdout
    assert_outcome(sandbox, "install", rerun)


def test_sighup_from_a_terminal_that_hung_up_still_rolls_back(sandbox: Sandbox) -> None:
    """A dropped SSH session: the terminal is gone, so every write to it fails with EIO, and the
    rollback must still finish."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the installer on a terminal
        os.environ.clear()
        os.environ.update(sandbox.merged_env({"DK_INSTALLER_FAILPOINT": "start"}))
        os.execv(sys.executable, [sys.executable, str(INSTALLER), *command(sandbox, "install")])
    seen = b""
    deadline = time.monotonic() + 120
    while b"failpoint start" not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 4096)
    assert b"failpoint start" in seen, seen
    os.close(fd)  # hang up: the installer's writes now fail
    os.kill(pid, signal.SIGHUP)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130
    assert not (sandbox.home / "journal.json").exists()
    assert not (sandbox.home / "testgen/home").exists()
    assert sandbox.processes() == []
