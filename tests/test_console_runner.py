"""Sections 3 and 4: console output rules and the command runner."""

from __future__ import annotations

import logging
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import INSTALLER, Sandbox

from dk_installer.console import Progress
from dk_installer.errors import CommandFailed
from dk_installer.runner import RedactingFormatter, Redactor, deferred_signals, probe, redact, run_command


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run the installer with a pseudo-terminal as stdin/stdout/stderr; return (exit code, screen)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(INSTALLER), *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(10), b"".join(chunks).decode(errors="replace")


def test_terminal_gets_colour_spinner_and_the_password_once(sandbox: Sandbox) -> None:
    env = {**sandbox.env, "FAKE_TESTGEN_START_DELAY": "2.5"}
    code, screen = run_in_terminal(sandbox.install_args("--no-demo"), env)
    assert code == 0, screen
    assert "\x1b[32m" in screen  # green OK
    assert "waiting for the UI and API to answer" in screen  # live progress of a slow step
    assert any(frame in screen for frame in Progress.FRAMES)
    password = sandbox.password()
    assert screen.count(password) == 1


def test_no_color_is_honoured_on_a_terminal(sandbox: Sandbox) -> None:
    code, screen = run_in_terminal(["doctor"], {**sandbox.env, "NO_COLOR": "1"})
    assert code in (0, 3)
    assert "\x1b[" not in screen


def test_pipes_get_no_escape_codes(sandbox: Sandbox) -> None:
    result = sandbox.install("--no-demo", "--no-start")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout + result.stderr
    assert "Check requirements ..." in result.stdout  # plain start lines off a terminal


def test_redactor_hides_known_secrets_and_secret_keys() -> None:
    redactor = Redactor()
    redactor.add("hunter2-very-secret")
    text = (
        "pw=hunter2-very-secret\nTG_JWT_HASHING_KEY=abc+/=\nTESTGEN_PASSWORD: 'x y'\nTESTGEN_USERNAME=admin"
    )
    assert redactor(text) == (
        "pw=[REDACTED]\nTG_JWT_HASHING_KEY=[REDACTED]\nTESTGEN_PASSWORD: [REDACTED]\nTESTGEN_USERNAME=admin"
    )


def test_redactor_masks_the_user_and_password_of_any_url() -> None:
    """A package index with credentials (issue 15, item 5), wherever its URL turns up."""
    redactor = Redactor()
    text = (
        "$ uv --index-url https://ci:t0ken@mirror:8443/simple x\n"
        "Looking in indexes: http://__token__:pypi-AgEI@h/simple, (https://glpat-xyz@gitlab/api)\n"
        "odd: https://user:p@ss@host/x; plain https://mirror/simple stays"
    )
    assert redactor(text) == (
        "$ uv --index-url https://[REDACTED]@mirror:8443/simple x\n"
        "Looking in indexes: http://[REDACTED]@h/simple, (https://[REDACTED]@gitlab/api)\n"
        "odd: https://[REDACTED]@host/x; plain https://mirror/simple stays"
    )


def test_children_run_outside_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15, item 1: the user's folder may hold a uv.toml or a csv.py."""
    monkeypatch.chdir(tmp_path)
    assert run_command(["pwd"]).strip() == "/"
    assert probe(["pwd"], timeout=10).stdout.strip() == "/"


def test_failing_command_raises_with_its_last_stderr_lines() -> None:
    script = "import sys\nfor i in range(30): print(f'err {i}', file=sys.stderr)\nsys.exit(4)"
    with pytest.raises(CommandFailed) as failed:
        run_command([sys.executable, "-c", script], what="the thing", error_code="setup_failed")
    assert failed.value.code == "setup_failed"
    assert "exit code 4" in failed.value.message
    assert failed.value.details.splitlines() == [f"err {i}" for i in range(20, 30)]


class Recorder:
    """Stands in for Progress: remembers every activity it is shown."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def update(self, activity: str) -> None:
        self.seen.append(activity)


def test_a_verbose_tools_chatter_shows_progress_but_never_hides_its_error() -> None:
    """Issue 15, item 14c: uv -v says what it does (shown as progress, logged); its error stays the
    failure's details even after many debug lines."""
    script = (
        "import sys\n"
        "for i in range(40): print(f'DEBUG Selecting: package-{i}', file=sys.stderr)\n"
        "print('error: the real error', file=sys.stderr)\n"
        "print('DEBUG Released lock', file=sys.stderr)\n"
        "sys.exit(2)"
    )
    progress = Recorder()
    with pytest.raises(CommandFailed) as failed:
        run_command([sys.executable, "-c", script], progress=progress, chatter="DEBUG ")  # type: ignore[arg-type]
    assert failed.value.details == "error: the real error"
    assert "Selecting: package-39" in progress.seen


def test_command_output_is_logged_redacted_and_stdin_is_fed(tmp_path: Path) -> None:
    handler = logging.FileHandler(tmp_path / "run.log")
    handler.setFormatter(RedactingFormatter("%(message)s"))
    logging.getLogger("dk_installer").addHandler(handler)
    logging.getLogger("dk_installer").setLevel(logging.DEBUG)
    secret = "correct-horse-battery"
    redact.add(secret)
    try:
        out = run_command([sys.executable, "-c", "print('got', input())"], stdin_text=secret + "\n")
    finally:
        logging.getLogger("dk_installer").removeHandler(handler)
        handler.close()
    assert out == f"got {secret}"
    logged = (tmp_path / "run.log").read_text()
    assert "got [REDACTED]" in logged and secret not in logged


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_failure_names_the_childs_error_even_when_warnings_follow_it() -> None:
    """Issue 15 item 6: the headline showed a child's last lines (warnings), not its error."""
    script = (
        "import sys, time\n"
        "print('Initializing database...', flush=True)\n"
        "time.sleep(0.3)  # the two streams are read apart: keep their order certain\n"
        "print('Traceback (most recent call last):', file=sys.stderr)\n"
        "print('    raise ValueError(msg)', file=sys.stderr)\n"
        "print('ValueError: the data folder is not usable', file=sys.stderr, flush=True)\n"
        "for i in range(12):\n"
        "    print(f'UserWarning: something old {i}', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    with pytest.raises(CommandFailed) as failed:
        run_command([sys.executable, "-c", script], what="child")
    assert failed.value.message == "child failed (exit code 3): ValueError: the data folder is not usable."
    assert failed.value.details.splitlines()[:4] == [
        "Initializing database...",
        "Traceback (most recent call last):",
        "    raise ValueError(msg)",
        "ValueError: the data folder is not usable",
    ]
    # Without an error line, the last lines it printed, as before.
    with pytest.raises(CommandFailed) as quiet:
        run_command([sys.executable, "-c", "import sys; print('no luck', file=sys.stderr); sys.exit(2)"])
    assert quiet.value.message.endswith("failed (exit code 2).") and quiet.value.details == "no luck"


def test_timeout_and_interrupt_stop_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(CommandFailed, match="did not finish within 2s"):
        run_command([sys.executable, "-c", script], timeout=2)
    child = int(marker.read_text())
    time.sleep(0.3)
    assert not alive(child)

    marker.unlink()
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_command([sys.executable, "-c", script])
    child = int(marker.read_text())
    time.sleep(0.3)
    assert not alive(child)


def test_deferred_signals_let_cleanup_finish_then_interrupt() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt), deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        finished.append(True)
    assert finished == [True]


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_reader_that_leaves_early_gets_no_broken_pipe_noise(sandbox: Sandbox, json_flag: list[str]) -> None:
    """Issue 15, item 14b: `status | head -1`. Here the pipe is closed before status writes at all,
    so that every write, and the flush at exit, meets the closed pipe."""
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    process = subprocess.Popen(
        [sys.executable, str(INSTALLER), "status", *json_flag],
        env=sandbox.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == 0, err
    assert err == ""
    shell = subprocess.run(
        ["sh", "-c", f'"$0" "{INSTALLER}" status {" ".join(json_flag)} | head -1', sys.executable],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.stdout.startswith(("TestGen", "{")) and shell.stderr == ""
