"""Faults as a matrix: every step of install, upgrade, start, stop, uninstall, backup, restore and
configure x every way to die, then a plain re-run of the same command, which must succeed and
leave nothing behind (no stray process, staging venv, safety copy, journal or half-written file).
Steps are stopped inside with the installer's failpoint hook (DK_INSTALLER_FAILPOINT); TestGen's own
commands are stopped mid-way with the stand-in's FAKE_TESTGEN_HANG."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pty
import pwd
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import INSTALLER, Sandbox, free_ports, wait_for_line, write_as
from managed_python import machine_without_python, python_downloads

from dk_installer.engine import UV_PYTHON
from dk_installer.recovery import register_all_steps
from dk_installer.steps.base import Step

pytestmark = pytest.mark.single_file  # end-to-end: the downloaded file, as users run it
register_all_steps()  # Step.by_name: each step's title, for the lines the cases read

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
    "launcher",
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
    "backup": ("stop", "snapshot_data", "restart", "write_backup"),
    "restore": ("unpack_backup", "stop", "swap_home", "upgrade_database", "restart", "verify_login"),
    "configure": ("stop", "apply_settings", "restart", "verify_login"),
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
# Steps that the plain setup would skip, and the setup in which each has work to do.
SCENARIOS = {
    ("install", "download_python"): "no_python",
    ("install", "backup_data"): "kept_data",
    ("install", "tls"): "https",
    ("install", "demo_data"): "demo",
    ("upgrade", "download_python"): "python_gone",
}


@dataclasses.dataclass
class Run:
    """How one case runs the action, and how the plain re-run after the kill runs it."""

    args: list[str]
    env: dict[str, str | None] = dataclasses.field(default_factory=dict)
    before_rerun: Callable[[], None] = lambda: None


@functools.cache
def uv_python_downloads(folder: Path) -> Path:
    return python_downloads(folder, UV_PYTHON)


def downloadable_python(sandbox: Sandbox) -> Path:
    """The downloads list from which uv gets the Python it installs on a machine without one (made
    on this machine, once per worker: the one uv's download site would give is out of reach)."""
    return uv_python_downloads(sandbox.wheelhouse.parent / "python-downloads")


def prepare(sandbox: Sandbox, action: str, step: str) -> Run:
    """Set up what the action needs, so that `step` has real work to do, and say how to run it."""
    scenario = SCENARIOS.get((action, step))
    install = ["--no-demo", "--version", "5.0.0"]
    if action == "install":
        if scenario == "kept_data":
            assert sandbox.install(*install).returncode == 0
            assert sandbox.run("uninstall", "--yes", "--keep-data").returncode == 0
        if scenario == "no_python":
            return Run(
                sandbox.install_args(*install),
                env=machine_without_python(sandbox, downloadable_python(sandbox)),
            )
        if scenario == "https":
            cert, key = make_certificate(sandbox.root)
            return Run(
                sandbox.install_args(*install, "--ssl-cert-file", str(cert), "--ssl-key-file", str(key))
            )
        if scenario == "demo":
            return Run(sandbox.install_args("--version", "5.0.0"))
        return Run(sandbox.install_args(*install))
    if scenario == "python_gone":
        # The interpreter TestGen was installed with goes away (and none other is there).
        python = sandbox.root / "python3.11"
        python.symlink_to(os.path.realpath(sys._base_executable))  # the test venv's own base
        assert sandbox.install(*install, "--python", str(python)).returncode == 0
        target = python.readlink()
        python.unlink()
        return Run(
            ["upgrade", "--find-links", str(sandbox.wheelhouse)],
            env=machine_without_python(sandbox, downloadable_python(sandbox)),
            before_rerun=lambda: python.symlink_to(target),
        )
    extra = ("--no-start",) if action == "start" else ()
    done = sandbox.install(*install, *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    if action == "upgrade":
        return Run(["upgrade", "--find-links", str(sandbox.wheelhouse)])
    if action == "uninstall":
        return Run(["uninstall", "--yes"])
    if action == "backup":
        return Run(["backup", "--output", str(sandbox.root / "backup.tar.gz")])
    if action == "configure":
        # New ports for the UI and the API: the re-run must end with TestGen serving on them.
        sandbox.ui_port, sandbox.api_port = free_ports(2)
        return Run(["configure", "--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port)])
    if action == "restore":
        archive = sandbox.root / "restore-from.tar.gz"
        assert sandbox.run("backup", "--output", str(archive)).returncode == 0
        return Run(["restore", str(archive), "--yes"])
    return Run([action])


def make_certificate(directory: Path) -> tuple[Path, Path]:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = directory / "cert.pem", directory / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def command(sandbox: Sandbox, action: str) -> list[str]:
    return prepare(sandbox, action, "").args


def assert_clean(sandbox: Sandbox) -> None:
    home = sandbox.home
    assert not (home / "journal.json").exists()
    assert not (home / "testgen/home.backup").exists()
    assert not (home / "testgen/home.restoring").exists()
    assert not (home / "testgen/home.snapshot").exists()
    assert not (home / "testgen/settings.before").exists()
    assert not (home / "testgen/.settings.before.partial").exists()
    assert not list(home.rglob(".*.tmp")), "a half-written file was left"
    assert not list(sandbox.root.glob(".*.tmp")), "a half-written backup was left"
    venvs = home / "testgen/venvs"
    assert len(list(venvs.iterdir())) <= 1 if venvs.exists() else True, "a staging venv was left"


def assert_outcome(sandbox: Sandbox, action: str, rerun: subprocess.CompletedProcess[str]) -> None:
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output
    assert_clean(sandbox)
    if action in ("install", "upgrade", "restore"):
        assert "'admin' logged in" in rerun.stdout, output
        status = sandbox.status()
        assert status["running"] and status["health"] == {"ui": True, "api": True}
        expected = "5.0.0" if action in ("install", "restore") else "5.1.0"
        assert sandbox.state()["product_version"] == expected
        if action == "upgrade":
            assert (sandbox.home / "testgen/home/schema-version").read_text().strip() == expected
    elif action == "configure":
        assert "'admin' logged in" in rerun.stdout, output
        state = sandbox.state()
        assert (state["ui_port"], state["api_port"]) == (sandbox.ui_port, sandbox.api_port)
        assert sandbox.status()["health"] == {"ui": True, "api": True}
        config = (sandbox.home / "testgen/home/config.env").read_text()
        assert f"TG_UI_PORT={sandbox.ui_port}" in config
    elif action in ("start", "backup"):
        assert sandbox.status()["running"]
        if action == "backup":
            assert (sandbox.root / "backup.tar.gz").stat().st_size > 0
    elif action == "stop":
        assert sandbox.processes() == []
    else:
        assert not sandbox.home.exists()
        assert sandbox.processes() == []


@pytest.mark.parametrize("action, step, death", CASES, ids=[f"{a}-{s}-{d}" for a, s, d in CASES])
def test_killed_in_any_step_then_a_plain_rerun_succeeds(
    sandbox: Sandbox, action: str, step: str, death: str
) -> None:
    run = prepare(sandbox, action, step)
    process = sandbox.popen(*run.args, env={**run.env, "DK_INSTALLER_FAILPOINT": step})
    wait_for_line(process, f"failpoint {step}")
    process.send_signal(DEATHS[death])
    out, err = process.communicate(timeout=180)
    if death == "SIGKILL":
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, out + err
        assert "Interrupted" in err
        assert not (sandbox.home / "journal.json").exists(), "a rolled-back action leaves no journal"
    run.before_rerun()
    assert_outcome(sandbox, action, sandbox.run(*run.args))


def step_line(output: str, step: str) -> str:
    title = Step.by_name[step].title
    return next(line for line in output.splitlines() if f" {title} (" in line)


@pytest.mark.parametrize(
    "action, step",
    [(action, step) for action, steps in STEPS.items() for step in steps if (action, step) in SCENARIOS]
    + [
        ("install", "launcher"),
        ("backup", "write_backup"),
        ("restore", "swap_home"),
        ("configure", "restart"),
    ],
)
def test_each_case_kills_a_step_with_work_to_do(sandbox: Sandbox, action: str, step: str) -> None:
    """The matrix claims to interrupt every step: in each case's setup, the step really runs (it
    is not SKIPPED but done."""
    run = prepare(sandbox, action, step)
    result = sandbox.run(*run.args, env=run.env)
    line = step_line(result.stdout + result.stderr, step)
    assert line.startswith("OK"), line
    assert result.returncode == 0, result.stdout + result.stderr
    if step == "download_python":
        assert str(sandbox.home / "pythons") in (sandbox.home / "testgen/venv/pyvenv.cfg").read_text()


def test_the_default_setup_leaves_no_step_skipped(sandbox: Sandbox) -> None:
    """Every step of install and upgrade that SCENARIOS does not name runs in the plain setup."""
    run = prepare(sandbox, "install", "")
    installed = sandbox.run(*run.args)
    upgraded = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse))
    for action, output in (("install", installed.stdout), ("upgrade", upgraded.stdout)):
        for step in STEPS[action]:
            if (action, step) not in SCENARIOS and Step.by_name[step].side_effects:
                assert step_line(output, step).startswith("OK"), (action, step, output)


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
    args = prepare(sandbox, action, step).args
    marker = tmp_path / "hanging.pid"
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


def test_status_and_doctor_report_an_install_in_progress(sandbox: Sandbox) -> None:
    """Issue 15 item 13: while an install ran, `status` said "not installed" and `doctor`
    "Everything looks fine"."""
    process = sandbox.popen(*command(sandbox, "install"), env={"DK_INSTALLER_FAILPOINT": "start"})
    try:
        wait_for_line(process, "failpoint start")
        status = sandbox.run("status")
        assert status.returncode == 0, status.stderr
        assert f"TestGen is not installed yet: `install` is in progress (pid {process.pid})" in status.stdout
        assert sandbox.status()["in_progress"] == {"action": "install", "pid": process.pid}
        doctor = sandbox.run("doctor")
        assert doctor.returncode == 3
        assert "Everything looks fine" not in doctor.stdout
        [row] = [line for line in doctor.stdout.splitlines() if "No command in progress" in line]
        assert "FAIL" in row and f"`install` is in progress (pid {process.pid})" in row
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert sandbox.status()["in_progress"] is None


def test_a_journal_another_user_planted_never_deletes_what_it_names(
    open_sandbox: Sandbox, other_user: pwd.struct_passwd
) -> None:
    """Issue 15 item 6: in a home that `umask 000` left world-writable (as earlier installers did),
    another local user plants a journal.json whose `partial_file` names a file of ours elsewhere,
    named just as a cut-short backup is. The next command recovers, and must leave that file."""
    sandbox = open_sandbox
    elsewhere = sandbox.root / "elsewhere"
    elsewhere.mkdir()
    precious = elsewhere / ".precious.tar.gz.4242.tmp"
    precious.write_text("mine")
    sandbox.home.mkdir(mode=0o777)
    sandbox.home.chmod(0o777)
    planted = {
        "action": "backup",
        "pid": 1,
        "steps": ["stop", "snapshot_data", "restart", "write_backup"],
        "partial_file": str(precious),
    }
    write_as(other_user, sandbox.home / "journal.json", json.dumps(planted).encode())
    assert (sandbox.home / "journal.json").stat().st_uid == other_user.pw_uid
    result = sandbox.install("--no-demo", "--version", "5.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert precious.read_text() == "mine"
    assert not (sandbox.home / "journal.json").exists()


def test_home_broken_by_an_earlier_installer_is_recognised(sandbox: Sandbox) -> None:
    """What a killed `standalone-setup` left before the journal existed: config.env, no receipt,
    no credentials. The old installer then ran upgrade-system-version on it and failed forever."""
    prepare(sandbox, "stop", "stop")
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
