"""Running other programs: each in its own process group, logged with secrets redacted, stopped as a
group; the run log; deferring Ctrl+C, SIGTERM and SIGHUP while cleanup runs."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dk_installer import __version__
from dk_installer.bootstrap import CHILD_CWD
from dk_installer.config import LOG_FILES_KEPT, REDACTED, mask_userinfo
from dk_installer.errors import CommandFailed, ErrorCode

if TYPE_CHECKING:
    from dk_installer.console import Progress
    from dk_installer.paths import Paths

log = logging.getLogger("dk_installer")


SECRET_KEYS = (
    "TESTGEN_PASSWORD",
    "TG_DECRYPT_PASSWORD",
    "TG_DECRYPT_SALT",
    "TG_JWT_HASHING_KEY",
    "TG_METADATA_DB_PASSWORD",
    "TG_METADATA_DB_ADMIN_PASSWORD",
    "PGPASSWORD",
)
# Variables that would load the user's code into a Python child (TestGen's, or one uv runs to
# inspect an interpreter); the children get what the installer means, not what the shell has.
USER_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")


class Redactor:
    """Replaces known secret values, the values of known secret keys, and the user and password
    of any URL (`https://user:token@mirror/simple`: a package index with credentials) before
    text is stored or shown."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        keys = "|".join(SECRET_KEYS)
        self._key_pattern = re.compile(rf"((?:{keys})\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)")

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6:
            self.secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = mask_userinfo(text)
        return self._key_pattern.sub(rf"\g<1>{REDACTED}", text)


redact = Redactor()


def file_tail(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a file (reading at most `max_bytes` from its end), redacted."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - max_bytes))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return redact("\n".join(text.splitlines()[-lines:]))


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def start_run_log(paths: Paths, action: str, verbose: bool) -> Path | None:
    """Every run writes a debug log; the newest LOG_FILES_KEPT are kept."""
    import platform

    log.setLevel(logging.DEBUG)
    log.propagate = False
    if verbose:
        stderr_handler = logging.StreamHandler(sys.stderr)
        stderr_handler.setFormatter(RedactingFormatter("debug: %(message)s"))
        log.addHandler(stderr_handler)
    try:
        paths.logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        log_path = paths.logs / f"dk-installer-{stamp}-{os.getpid()}-{action}.log"
        handler = logging.FileHandler(log_path)
    except OSError:
        return None
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    old_logs = sorted(paths.logs.glob("dk-installer-*.log"), key=lambda p: p.stat().st_mtime)
    for old in old_logs[:-LOG_FILES_KEPT]:
        with contextlib.suppress(OSError):
            old.unlink()
    log.info("dk-installer %s, %s, Python %s", __version__, action, platform.python_version())
    return log_path


def current_log_path() -> str:
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return "(no log file)"


def stop_process_group(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is still there after `grace`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def probe(
    cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A short command whose output the caller reads (not logged): in CHILD_CWD, without stdin.
    Raises OSError or SubprocessError (a timeout) like subprocess.run."""
    return subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=CHILD_CWD,
    )


OUTPUT_TAIL_LINES = 200
# What a child's own error looks like: an exception's last line (`ValueError: ...`), click's and
# uv's `Error:` / `error:`, PostgreSQL's and loggers' severities. Warnings never match.
_ERROR_LINE = re.compile(
    r"\b[A-Za-z_.]*(?:Error|Exception)\b(?::|$)|\berror:|\b(?:FATAL|PANIC|ERROR|CRITICAL)\b"
)


def error_line_index(lines: Sequence[str]) -> int | None:
    """Where the child's error is: the last line that looks like one (None when none does)."""
    for index in range(len(lines) - 1, -1, -1):
        if _ERROR_LINE.search(lines[index]) and "warning" not in lines[index].lower():
            return index
    return None


def failure_report(output: Sequence[str], fallback: Sequence[str]) -> tuple[str, str]:
    """The headline's end (": <the child's error line>") and the details shown under it, both
    redacted. The details are the lines that led to the error and a few after it (uv's causes),
    rather than blindly the last lines printed, which can be warnings that followed the error;
    without an error line, the last lines of `fallback` (stderr, else stdout)."""
    found = error_line_index(output)
    if found is None:
        return "", redact("\n".join(list(fallback)[-10:]))
    cause = redact(output[found].strip()).rstrip(".")
    if len(cause) > 200:
        cause = cause[:200] + "…"
    # uv prints its causes after its error line, wrapped: keep enough of them.
    return f": {cause}", redact("\n".join(output[max(0, found - 9) : found + 12]))


def run_command(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] = CHILD_CWD,
    stdin_text: str | None = None,
    progress: Progress | None = None,
    timeout: float | None = None,
    error_code: str = "subprocess_failed",
    what: str | None = None,
    chatter: str | None = None,
) -> str:
    """Run `cmd` in its own process group, in `cwd` (never the user's current folder), logging its
    output (redacted) and feeding the latest line to `progress`. Returns stdout. Raises
    CommandFailed naming the child's error line. Lines that start with `chatter` (a verbose tool's
    debug lines) show what it is doing and go to the log, but never crowd the tool's own error out
    of the failure's details."""
    log.info("$ %s", " ".join(cmd))
    process = subprocess.Popen(
        list(cmd),
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    stdout_lines: list[str] = []
    stderr_tail: deque[str] = deque(maxlen=15)
    # Both streams in the order they came: a child's error may be on either (TestGen logs its
    # errors to stdout while getpass warns on stderr).
    output_tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)

    def pump(stream: Any, sink: Callable[[str], None], label: str) -> None:
        for line in stream:
            line = line.rstrip("\n")
            log.debug("%s| %s", label, line)
            is_chatter = chatter is not None and line.startswith(chatter)
            if not is_chatter:
                sink(line)
                output_tail.append(line)
            if progress and line.strip():
                progress.update(redact(line.removeprefix(chatter) if is_chatter and chatter else line)[:120])

    readers = [
        threading.Thread(target=pump, args=(process.stdout, stdout_lines.append, "out"), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, stderr_tail.append, "err"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        if stdin_text is not None and process.stdin:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(stdin_text)
                process.stdin.close()
        returncode = process.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(process)
        cause, details = failure_report(list(output_tail), list(stderr_tail) or stdout_lines)
        raise CommandFailed(
            f"{what or cmd[0]} did not finish within {timeout:.0f}s{cause}.",
            code=error_code,
            details=details,
        ) from None
    except BaseException:
        stop_process_group(process)
        raise
    for reader in readers:
        reader.join(5)
    log.info("exit code %s", returncode)
    if returncode != 0:
        cause, details = failure_report(list(output_tail), list(stderr_tail) or stdout_lines)
        if any("no space left on device" in line.lower() for line in output_tail):
            raise CommandFailed(
                f"{what or Path(cmd[0]).name} failed: no space left on device.",
                code=ErrorCode.DISK_FULL,
                details=details,
            )
        raise CommandFailed(
            f"{what or Path(cmd[0]).name} failed (exit code {returncode}){cause}.",
            code=error_code,
            details=details,
        )
    return "\n".join(stdout_lines)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Let cleanup finish: a Ctrl+C, SIGTERM or SIGHUP arriving now is remembered and re-raised after."""
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in INTERRUPTING_SIGNALS}
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in previous:
            signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt


# A dropped SSH session (SIGHUP) is an interruption like Ctrl+C and SIGTERM: rolled back, exit 130.
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
