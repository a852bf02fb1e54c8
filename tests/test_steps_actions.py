"""Sections 7 to 9: steps and their undo, version handling, interpreter discovery, actions under
interruption, and the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Sandbox
from faults import AcceptAndHang, serving

from dk_installer import __version__
from dk_installer.checks import find_testgen_python
from dk_installer.config import Settings
from dk_installer.console import Console, Progress
from dk_installer.errors import InstallerError
from dk_installer.paths import Paths
from dk_installer.runner import SECRET_KEYS
from dk_installer.steps.base import ActionContext, Step, run_steps
from dk_installer.versions import spec_allows, version_specifier


def context(tmp_path: Path) -> ActionContext:
    paths = Paths(home=tmp_path / "home", config=tmp_path / "config")
    return ActionContext(paths, Settings(), Console(quiet=True), False)


class Recording(Step):
    def __init__(
        self, name: str, journal: list[str], fail: BaseException | None = None, required: bool = True
    ) -> None:
        self.name = self.title = name
        self.journal = journal
        self.fail = fail
        self.required = required

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        self.journal.append(f"run {self.name}")
        if self.fail:
            raise self.fail

    def undo(self, ctx: ActionContext) -> None:
        self.journal.append(f"undo {self.name}")

    def commit(self, ctx: ActionContext) -> None:
        self.journal.append(f"commit {self.name}")


@pytest.mark.parametrize("failure", [InstallerError("boom", code="setup_failed"), KeyboardInterrupt()])
def test_failure_undoes_every_started_step_newest_first(tmp_path: Path, failure: BaseException) -> None:
    journal: list[str] = []
    ctx = context(tmp_path)
    steps = [
        Recording("a", journal),
        Recording("b", journal),
        Recording("c", journal, fail=failure),
        Recording("d", journal),
    ]
    with pytest.raises(type(failure)):
        run_steps(ctx, steps)
    assert journal == ["run a", "run b", "run c", "undo c", "undo b", "undo a"]
    assert ctx.step == "c"


def test_best_effort_step_failure_is_shown_and_the_rest_goes_on(tmp_path: Path) -> None:
    journal: list[str] = []
    ctx = context(tmp_path)
    run_steps(
        ctx,
        [
            Recording("demo", journal, fail=InstallerError("no demo"), required=False),
            Recording("start", journal),
        ],
    )
    assert journal == ["run demo", "run start", "commit demo", "commit start"]
    assert ctx.step is None


@pytest.mark.parametrize(
    "given, spec",
    [
        (None, ">=5,<6"),
        ("5.92.2", "==5.92.2"),
        ("5.1", "==5.1"),
        (">=5.90,<6", ">=5.90,<6"),
        ("~=5.3", "~=5.3"),
        ("==5.*", "==5.*"),
        ("5.0.0rc1", "==5.0.0rc1"),
    ],
)
def test_version_specifiers(given: str | None, spec: str) -> None:
    assert version_specifier(given) == spec


@pytest.mark.parametrize("bad", ["latest", "5.0; rm -rf /", "--pre", ">= five"])
def test_bad_versions_are_usage_errors(bad: str, sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="neither a version"):
        version_specifier(bad)
    result = sandbox.run("install", "--version", bad)
    assert result.returncode == 2 and "Invalid value for '--version'" in result.stderr


@pytest.mark.parametrize(
    "spec, version, allowed",
    [
        (">=5,<6", "5.134.0", True),
        (">=5,<6", "6.0.0", False),
        ("==5.92.2", "5.92.2", True),
        ("==5.92.2", "5.92.20", False),
        ("~=5.90", "5.134.0", True),
        ("~=5.90", "6.1", False),
        ("==5.*", "5.1.2", True),
        ("!=5.1.0", "5.1.0", False),
    ],
)
def test_installed_version_against_spec(spec: str, version: str, allowed: bool) -> None:
    assert spec_allows(spec, version) is allowed


def fake_python(directory: Path, name: str, version: str | None) -> Path:
    """A script that answers the interpreter probe like Python `version` (or fails like a shim)."""
    directory.mkdir(exist_ok=True)
    script = directory / name
    body = f'echo "{script}"; echo "{version}"' if version else 'echo "pyenv: not selected" >&2; exit 127'
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_interpreter_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir, "python3.13", None)  # a broken shim must be skipped, not fatal
    fake_python(bin_dir, "python3.12", "3.12.4")
    monkeypatch.setenv("PATH", str(bin_dir))
    found = find_testgen_python(None)
    assert found.ok and found.detail.endswith("(3.12.4)")
    old = fake_python(bin_dir, "old-python", "3.10.13")
    too_old = find_testgen_python(str(old))
    assert not too_old.ok and too_old.code == "python_too_old" and "3.11+" in too_old.detail
    missing = find_testgen_python(str(tmp_path / "nope"))
    assert not missing.ok and missing.code == "python_not_found"


def test_names_of_one_interpreter_start_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """python3 -> python3.11 in one folder is one interpreter: the preflight starts it once (each
    start of a real one costs ~60 ms CPU); a copy of it in another folder is another one."""
    starts = tmp_path / "starts"
    bin_dir, other_dir = tmp_path / "bin", tmp_path / "other"
    for folder in (bin_dir, other_dir):
        script = fake_python(folder, "python3.11", "3.11.9")
        script.write_text(f"#!/bin/sh\necho x >> {starts}\n" + script.read_text().split("\n", 1)[1])
    (bin_dir / "python3").symlink_to("python3.11")
    (bin_dir / "python3.12").symlink_to(bin_dir / "python3.11")
    monkeypatch.setenv("PATH", str(bin_dir))
    found = find_testgen_python(None)
    assert found.ok and found.interpreter == str(bin_dir / "python3.11"), found.detail
    assert starts.read_text().count("x") == 1
    (bin_dir / "python3").unlink()
    (bin_dir / "python3").symlink_to(other_dir / "python3.11")
    starts.unlink()
    assert find_testgen_python(None).ok
    assert starts.read_text().count("x") == 2


def test_python_too_old_is_a_requirement_failure(sandbox: Sandbox, tmp_path: Path) -> None:
    old = fake_python(tmp_path / "bin", "python3.10", "3.10.13")
    result = sandbox.install("--python", str(old))
    assert result.returncode == 3
    assert "TestGen needs 3.11+" in result.stdout + result.stderr


def test_sigint_during_the_package_step_removes_the_staging_venv(sandbox: Sandbox) -> None:
    with serving(AcceptAndHang()) as hanging:
        process = sandbox.popen(
            "install",
            "--find-links",
            f"{hanging.url}/wheels/",
            "--port",
            str(sandbox.ui_port),
            "--api-port",
            str(sandbox.api_port),
            "--no-browser",
        )
        deadline = time.monotonic() + 60
        while hanging.connections == 0:
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.1)
        assert list((sandbox.home / "testgen/venvs").iterdir())  # the staging venv exists now
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "FAILED  Install TestGen" in out
    assert list((sandbox.home / "testgen").glob("venvs/*")) == []
    assert not (sandbox.home / "testgen/venv").exists()
    assert sandbox.processes() == []
    assert sandbox.install("--no-demo").returncode == 0


def test_sigint_while_waiting_for_start_leaves_no_half_started_app(sandbox: Sandbox) -> None:
    process = sandbox.popen(*sandbox.install_args("--no-demo"), env={"FAKE_TESTGEN_START_DELAY": "60"})
    app_pid = sandbox.home / "testgen/app.pid"
    deadline = time.monotonic() + 60
    while not app_pid.exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130, out + err
    assert sandbox.processes() == []
    assert not (sandbox.home / "state.json").exists()


def test_sigint_during_upgrade_keeps_the_previous_install_running(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.install("--version", "5.0.0", "--no-demo").returncode == 0
    marker = tmp_path / "hang"
    process = sandbox.popen(
        "upgrade",
        "--find-links",
        str(sandbox.wheelhouse),
        env={"FAKE_TESTGEN_HANG": "upgrade-system-version", "FAKE_TESTGEN_HANG_MARKER": str(marker)},
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    status = sandbox.status()
    assert status["version"] == "5.0.0" and status["running"] is True
    assert sandbox.state()["product_version"] == "5.0.0"


def test_upgrade_when_already_newest(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    again = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse))
    assert again.returncode == 0
    assert "already the newest" in again.stdout
    assert len(list((sandbox.home / "testgen/venvs").iterdir())) == 1


def test_install_of_a_different_version_points_to_upgrade(sandbox: Sandbox) -> None:
    assert sandbox.install("--version", "5.1.0", "--no-demo", "--no-start").returncode == 0
    other = sandbox.install("--version", "5.0.0")
    assert other.returncode == 1
    assert "upgrade --version" in other.stderr


def test_commands_that_need_an_install_say_so(sandbox: Sandbox) -> None:
    for command in ("start", "upgrade"):
        result = sandbox.run(command)
        assert result.returncode == 1
        assert "not installed" in result.stderr
    assert sandbox.run("stop").returncode == 0
    assert "Nothing to uninstall" in sandbox.run("uninstall", "--yes").stdout


def test_options_recorded_are_names_only(sandbox: Sandbox) -> None:
    env = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    result = sandbox.run("--verbose", *sandbox.install_args("--no-demo", "--no-start"), env=env)
    event = json.loads(result.stderr.split("analytics debug (not sent): ", 1)[1].splitlines()[0])
    assert event["properties"]["options"] == [
        "api_port",
        "find_links",
        "no_browser",
        "no_demo",
        "no_start",
        "port",
        "verbose",
    ]
    assert str(sandbox.ui_port) not in json.dumps(event["properties"]["options"])
    assert event["properties"]["package_engine"] == "uv" and event["properties"]["product_version"] == "5.1.0"


def test_console_script_from_pip_install(sandbox: Sandbox) -> None:
    script = Path(sys.executable).parent / "dk-installer"
    version = subprocess.run([str(script), "--version"], env=sandbox.env, capture_output=True, text=True)
    assert version.stdout.strip() == f"dk-installer {__version__}"
    env = {**sandbox.env, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    env.pop("DK_INSTALLER_ANALYTICS")
    status = subprocess.run([str(script), "status"], env=env, capture_output=True, text=True)
    assert '"launched_by": "package"' in status.stderr
    assert (
        "Usage: dk-installer"
        in subprocess.run([str(script), "--help"], capture_output=True, text=True).stdout
    )


def test_exit_codes(sandbox: Sandbox) -> None:
    assert sandbox.run("--version").returncode == 0
    assert sandbox.run("no-such-command").returncode == 2
    assert sandbox.run("install", "--version", "latest").returncode == 2
    assert sandbox.run("doctor", env={"DK_INSTALLER_MIN_FREE_BYTES": str(10**15)}).returncode == 3


def test_logs_bundle_is_redacted(sandbox: Sandbox, tmp_path: Path) -> None:
    import zipfile

    assert sandbox.install("--no-demo").returncode == 0
    bundle = tmp_path / "support.zip"
    result = sandbox.run("logs", "--output", str(bundle))
    assert result.returncode == 0
    password = sandbox.password()
    config = (sandbox.home / "testgen/home/config.env").read_text()
    secrets = [password] + [
        line.split("=", 1)[1] for line in config.splitlines() if line.split("=", 1)[0] in SECRET_KEYS
    ]
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        everything = "".join(archive.read(name).decode(errors="replace") for name in names)
    assert {"doctor.txt", "state.json", "testgen/config.env"} <= set(names)
    assert any(name.startswith("logs/dk-installer-") for name in names)
    assert "TESTGEN_PASSWORD=[REDACTED]" in everything
    for secret in secrets:
        assert secret not in everything
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"
    for log_file in (sandbox.home / "logs").glob("*.log"):
        assert password not in log_file.read_text()


def test_logs_output_onto_an_existing_file_leaves_a_0600_zip(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 15, item 7c: the support zip holds logs; a world-readable file it replaces must not
    pass its mode on."""
    import zipfile

    (tmp_path / "out").mkdir()
    bundle = tmp_path / "out" / "support.zip"
    bundle.write_text("an older file, readable and writable by everyone")
    bundle.chmod(0o666)
    result = sandbox.run("logs", "--output", str(bundle), env={"UV_INDEX_URL": "http://127.0.0.1:9/simple"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"
    assert "doctor.txt" in zipfile.ZipFile(bundle).namelist()
    assert os.listdir(tmp_path / "out") == ["support.zip"]  # no partial file left beside it


def test_upgrade_of_a_stopped_install_keeps_it_stopped_and_keeps_its_receipt(sandbox: Sandbox) -> None:
    assert sandbox.install("--version", "5.0.0", "--no-demo", "--no-start").returncode == 0
    before = sandbox.state()
    upgraded = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "SKIPPED Start TestGen again" in upgraded.stdout
    after = sandbox.state()
    assert after["product_version"] == "5.1.0"
    assert after["demo_data"] is False and after["installed_at"] == before["installed_at"]
    assert sandbox.status()["running"] is False
    assert sandbox.processes() == []
