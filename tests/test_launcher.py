"""The `dk-installer` command on PATH (issue 11): written by install into the XDG bin dir, never
over a foreign one, used in hints only when it is ours on PATH, removed by uninstall."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import Sandbox

pytestmark = pytest.mark.single_file  # end-to-end: the downloaded file, as users run it


def on_path(sandbox: Sandbox, directory: str | None = None) -> dict[str, str | None]:
    return {"PATH": f"{directory or sandbox.user_home / '.local/bin'}{os.pathsep}{os.environ['PATH']}"}


def test_install_puts_a_launcher_on_path_that_runs_the_installer(sandbox: Sandbox) -> None:
    env = on_path(sandbox)
    result = sandbox.install("--no-demo", "--no-start", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    launcher = sandbox.user_home / ".local/bin/dk-installer"
    assert launcher.stat().st_mode & 0o777 == 0o755
    assert "OK      Put the dk-installer command on PATH" in result.stdout
    assert "Status:     dk-installer status" in result.stdout  # hints name it: it is ours, on PATH
    debug = {**sandbox.merged_env(env), "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    debug.pop("DK_INSTALLER_ANALYTICS")
    status = subprocess.run(["dk-installer", "status"], env=debug, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "installed, stopped" in status.stdout
    event = json.loads(status.stderr.split("analytics debug (not sent): ")[1].splitlines()[0])
    assert event["properties"]["launched_by"] == "launcher"
    removed = sandbox.run("uninstall", "--yes", env=env)
    assert removed.returncode == 0, removed.stderr
    assert not launcher.exists()


def test_without_the_bin_dir_on_path_hints_say_so_and_keep_the_long_form(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo", "--no-start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not on your PATH" in result.stdout
    assert (
        "Status:     dk-installer status" not in result.stdout and "dk_installer.py status" in result.stdout
    )


def test_a_dk_installer_that_is_not_ours_is_never_overwritten(sandbox: Sandbox) -> None:
    foreign = sandbox.user_home / ".local/bin/dk-installer"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\necho pip's console script\n")
    result = sandbox.install("--no-demo", "--no-start", env=on_path(sandbox))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not ours; left as it is" in result.stdout
    assert foreign.read_text() == "#!/bin/sh\necho pip's console script\n"
    assert "Status:     dk-installer status" not in result.stdout  # on PATH, but not ours
    assert sandbox.run("uninstall", "--yes").returncode == 0
    assert foreign.exists()


def test_xdg_bin_home_is_where_it_goes(sandbox: Sandbox) -> None:
    bin_dir = sandbox.user_home / "my-bin"
    result = sandbox.install("--no-demo", "--no-start", env={"XDG_BIN_HOME": str(bin_dir)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (bin_dir / "dk-installer").exists()


def test_uninstall_leaves_the_launcher_of_another_install_alone(sandbox: Sandbox) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    launcher = sandbox.user_home / ".local/bin/dk-installer"
    other_home = sandbox.root / "another-install"
    launcher.write_text(launcher.read_text().replace(str(sandbox.home), str(other_home)))
    assert sandbox.run("uninstall", "--yes").returncode == 0
    assert launcher.exists(), "it serves another install"
