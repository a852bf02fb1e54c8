"""`service enable|disable|status` and `run` (issue 11): the unit checked by systemd-analyze, the
calls made through a stand-in `systemctl --user` that really runs the unit, the `run` contract for
real, and the refusal where no service manager is usable."""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import INSTALLER, Sandbox

FAKE_TOOLS = Path(__file__).parent / "fake_tools"
UNIT = "dk-installer-testgen.service"


def with_systemctl(sandbox: Sandbox, **extra: str) -> dict[str, str | None]:
    state = sandbox.root / "systemctl-state"
    return {
        "PATH": f"{FAKE_TOOLS}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SYSTEMCTL_STATE": str(state),
        **extra,
    }


def calls(sandbox: Sandbox) -> list[str]:
    log = sandbox.root / "systemctl-state" / "calls.log"
    made = log.read_text().splitlines() if log.exists() else []
    return [call for call in made if " is-active " not in call]  # queries, not actions


def unit_path(sandbox: Sandbox) -> Path:
    return sandbox.config / "systemd" / "user" / UNIT


def test_print_shows_a_unit_that_systemd_accepts_and_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    printed = sandbox.run("service", "enable", "--print")
    assert printed.returncode == 0, printed.stderr
    assert not unit_path(sandbox).exists() and not (sandbox.config / "systemd").exists()
    text = printed.stdout.split("\n", 1)[1]
    assert "ExecStart=" in text and text.splitlines()[text.splitlines().index("[Service]") + 2].endswith(
        ' "run"'
    )
    assert "Restart=on-failure" in text and f'Environment="DK_INSTALLER_HOME={sandbox.home}"' in text
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing: tests/run.sh installs Debian's systemd package")
    unit = tmp_path / UNIT
    unit.write_text(text)
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    unit.write_text(
        text.replace("Restart=on-failure", "Restart=sometimes").replace(
            "ExecStart=", "ExecStart=/nonexistent "
        )
    )
    broken = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert broken.returncode != 0  # the control: verify does look at the unit


def test_print_on_a_fresh_machine_writes_nothing_at_all(sandbox: Sandbox) -> None:
    """Issue 15, item 7d: no run log, no lock, no home; with analytics on, no notice saved and no
    event (either would write the settings folder)."""
    analytics_on = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    printed = sandbox.run("service", "enable", "--print", env=analytics_on)
    assert printed.returncode == 0, printed.stderr
    assert "ExecStart=" in printed.stdout and "analytics debug" not in printed.stderr
    assert not sandbox.home.exists() and not sandbox.config.exists()
    assert os.listdir(sandbox.user_home) == []


# What a path may hold that systemd would otherwise read as syntax: specifiers, variables in both
# forms, quotes, a backslash, a lone semicolon (a command separator) and a trailing backslash.
HOSTILE = "%h $HOME ${USER} \"dq\" 'sq' back\\slash ; end\\"


def systemd_parsed(unit: Path) -> tuple[list[str], dict[str, str]]:
    """What systemd itself makes of `unit`: systemd-analyze verify, which fails unless the program's
    path (taken literally) is an executable file, dumps the loaded unit at debug level. argv as the
    process gets it (`$$` becomes `$` at exec time) and the Environment= assignments."""
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing: tests/run.sh installs Debian's systemd package")
    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_LOG_TARGET": "console"},
    )
    assert verified.returncode == 0, verified.stderr[-3000:]
    dump = (verified.stdout + verified.stderr).split(f"-> Unit {unit.name}:", 1)[1].split("-> Unit ", 1)[0]
    environment = dict(
        line.split("Environment: ", 1)[1].split("=", 1)
        for line in dump.splitlines()
        if line.strip().startswith("Environment: ")
    )
    # The dump quotes argv as a shell would: \" and \\ (which shlex reads) and \$ (which it keeps).
    shown = next(line.split("Command Line: ", 1)[1] for line in dump.splitlines() if "Command Line: " in line)
    argv = [word.replace("\\$", "$").replace("$$", "$") for word in shlex.split(shown)]
    return argv, environment


def test_the_unit_keeps_every_path_literal_for_systemd(tmp_path: Path) -> None:
    """Issue 15, item 7a: systemd reads `%` and `$` in a unit, and has its own quoting."""
    from dk_installer.paths import Paths
    from dk_installer.service import ServiceManager

    folder = tmp_path / HOSTILE
    folder.mkdir()
    bin_folder = tmp_path / "%h $HOME ${USER} ; %%"  # systemd refuses quotes and backslashes there
    bin_folder.mkdir()
    program = bin_folder / "python3"
    program.symlink_to(sys.executable)
    paths = Paths(home=folder / "dk-home", config=folder / "config" / "dk-installer")
    manager = ServiceManager(paths)
    manager.launchd = False
    command = [str(program), str(paths.installer_copy), "run"]
    unit = tmp_path / UNIT
    unit.write_text(manager.definition(command, paths))
    assert systemd_parsed(unit) == (
        command,
        {"DK_INSTALLER_HOME": str(paths.home), "XDG_CONFIG_HOME": str(folder / "config")},
    )


@pytest.mark.parametrize("character", ['"', "'", "\\"])
def test_a_program_path_that_systemd_cannot_run_is_refused(tmp_path: Path, character: str) -> None:
    from dk_installer.errors import InstallerError
    from dk_installer.paths import Paths
    from dk_installer.service import ServiceManager

    paths = Paths(home=tmp_path / "dk-home", config=tmp_path / "config" / "dk-installer")
    manager = ServiceManager(paths)
    manager.launchd = False
    with pytest.raises(InstallerError, match="quote or a backslash"):
        manager.definition([f"/opt/py{character}/python3", "run"], paths)


@pytest.mark.parametrize("character", ["\n", "\r", "\t", "\x7f"])
def test_a_control_character_in_the_home_is_refused_before_anything_is_written(
    sandbox: Sandbox, character: str
) -> None:
    """Issue 15, item 7a: a newline in DK_INSTALLER_HOME would add lines to the unit."""
    home = sandbox.root / f"dk{character}ExecStartPre=/bin/touch {sandbox.root}/pwned"
    env = with_systemctl(sandbox, DK_INSTALLER_HOME=str(home))
    for args in (("service", "enable", "--print"), ("service", "enable")):
        result = sandbox.run(*args, env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "control character" in result.stderr and "ExecStart" not in result.stdout
    assert not (sandbox.config / "systemd").exists() and not (sandbox.root / "pwned").exists()


@pytest.mark.parametrize("machine", ["systemctl-without-a-bus", "no-systemctl"])
def test_enable_without_a_usable_service_manager_exits_3_and_writes_nothing(
    sandbox: Sandbox, machine: str
) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    if machine == "no-systemctl":
        empty = sandbox.root / "empty-bin"
        empty.mkdir()
        env = {"PATH": str(empty)}
    else:
        env = with_systemctl(sandbox, FAKE_SYSTEMCTL_NO_BUS="1")
    result = sandbox.run("service", "enable", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Service manager" in result.stdout and "Nothing was written" in result.stdout
    assert not (sandbox.config / "systemd").exists()
    assert sandbox.status()["running"] is False


def test_testgen_as_a_service_is_started_and_stopped_through_the_service_manager(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--version", "5.0.0").returncode == 0
    env = with_systemctl(sandbox)
    enabled = sandbox.run("service", "enable", env=env)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    assert unit_path(sandbox).exists()
    assert calls(sandbox)[-2:] == ["--user daemon-reload", f"--user enable --now {UNIT}"]
    assert "starts at boot" in enabled.stdout and "loginctl enable-linger" in enabled.stdout
    status = sandbox.run("status", "--json", env=env)
    assert '"service": true' in status.stdout and '"running": true' in status.stdout
    assert any(cmd.endswith(" run") for _, cmd in sandbox.processes()), "the service runs `run`"
    assert "is a service" in sandbox.run("service", "status", env=env).stdout

    stopped = sandbox.run("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"--user stop {UNIT}" in calls(sandbox)
    assert sandbox.processes() == []
    started = sandbox.run("start", env=env)
    assert started.returncode == 0, started.stderr
    assert calls(sandbox)[-1] == f"--user start {UNIT}"
    upgraded = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse), env=env)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "'admin' logged in" in upgraded.stdout
    assert calls(sandbox)[-2:] == [f"--user stop {UNIT}", f"--user start {UNIT}"]

    removed = sandbox.run("uninstall", "--yes", env=env)
    assert removed.returncode == 0, removed.stderr
    assert f"--user disable --now {UNIT}" in calls(sandbox)
    assert not unit_path(sandbox).exists()
    assert sandbox.processes() == []


def test_run_stays_attached_holds_no_lock_and_stops_cleanly_on_sigterm(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    debug = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    process = sandbox.popen("run", env=debug)
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while not sandbox.status()["running"] or sandbox.status()["health"] != {"ui": True, "api": True}:
        assert time.monotonic() < deadline and process.poll() is None, "run never served TestGen"
        time.sleep(0.3)
    with open(sandbox.home / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # run holds no lock: this does not raise
    again = sandbox.run("run")
    assert again.returncode == 1 and "already running" in again.stderr
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, out + err
    assert "stopped" in out
    assert "analytics debug" not in err  # run records no event
    assert sandbox.processes() == []


def test_run_ends_with_an_error_when_testgen_dies_so_the_service_restarts_it(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    process = sandbox.popen("run")
    assert process.stdout is not None
    while "is running:" not in (line := process.stdout.readline()):
        assert line, "run never served TestGen"
    app_pid = int((sandbox.home / "testgen/app.pid").read_text().split()[0])
    os.kill(app_pid, signal.SIGKILL)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 1, out + err
    assert "Error: TestGen exited (exit code -9)." in err
    assert sandbox.processes() == []  # its PostgreSQL went too


def test_the_launchd_agent_on_macos(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS cannot run here: the agent's definition and the launchctl calls, with a stand-in."""
    import plistlib

    from dk_installer.paths import Paths
    from dk_installer.service import ServiceManager

    monkeypatch.setenv("HOME", str(sandbox.user_home))
    monkeypatch.setenv("PATH", f"{FAKE_TOOLS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LAUNCHCTL_LOG", str(tmp_path / "launchctl.log"))
    paths = Paths(home=sandbox.home, config=sandbox.config / "dk-installer")
    manager = ServiceManager(paths)
    manager.launchd = True
    agent = plistlib.loads(
        manager.definition(["/usr/bin/python3", "/x/dk_installer.py", "run"], paths).encode()
    )
    assert agent["ProgramArguments"][-1] == "run" and agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}  # restarted when it fails, like Restart=on-failure
    assert agent["EnvironmentVariables"]["DK_INSTALLER_HOME"] == str(sandbox.home)
    assert (
        manager.unit_path
        == sandbox.user_home / "Library/LaunchAgents/com.datakitchen.dk-installer-testgen.plist"
    )
    assert manager.unusable_reason() is None
    manager.enable(manager.definition(["/usr/bin/python3", "/x/dk_installer.py", "run"], paths))
    assert manager.installed() and manager.active()
    manager.stop()
    manager.start()
    manager.disable()
    assert not manager.installed()
    uid = os.getuid()
    label = "com.datakitchen.dk-installer-testgen"
    made = [c for c in (tmp_path / "launchctl.log").read_text().splitlines() if not c.startswith("print")]
    assert made == [
        f"bootstrap gui/{uid} {manager.unit_path}",
        f"kill SIGTERM gui/{uid}/{label}",
        f"kickstart gui/{uid}/{label}",
        f"bootout gui/{uid}/{label}",
    ]


@pytest.mark.single_file  # the copy is of the downloaded file, which only the file makes and runs
def test_the_unit_runs_the_installers_own_copy_not_a_clone(sandbox: Sandbox) -> None:
    """Issue 15, item 14: run from a clone (or a download folder), the service must not point at a
    file that may go away: it runs the copy kept in DK_INSTALLER_HOME when there is one."""
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    copy = sandbox.home / "dk_installer.py"
    shutil.copy(INSTALLER, copy)
    printed = sandbox.run("service", "enable", "--print")
    assert printed.returncode == 0, printed.stderr
    exec_start = next(line for line in printed.stdout.splitlines() if line.startswith("ExecStart="))
    assert str(copy) in exec_start and str(INSTALLER) not in exec_start, exec_start
