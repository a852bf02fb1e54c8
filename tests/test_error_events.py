"""Errors are the analytics' core data: for every error code README's table lists that a test can
provoke, and every exit code, run the action with DK_INSTALLER_ANALYTICS_DEBUG=1 and check the one
event it records. One table drives the runs; README's tables are checked against it."""

from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, Sandbox, bare_python, free_port, wait_for_line

from dk_installer.errors import ERROR_CODES

DEBUG = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}


@dataclass
class Case:
    code: str | None
    exit_code: int
    outcome: str | None  # None: no event at all
    failed_step: str | None = None
    missing: list[str] = field(default_factory=list)
    args: Callable[[Sandbox], list[str]] = lambda box: box.install_args("--no-demo")
    env: dict[str, str | None] = field(default_factory=dict)
    prepare: Callable[[Sandbox], None] = lambda box: None
    interrupt_at: str | None = None
    error_type: str = "InstallerError"  # for failures: CommandFailed when a command's exit code decided
    server: bool = False  # the case needs the real PostgreSQL servers (box.postgres, box.postgres_tls)


def installed(*extra: str) -> Callable[[Sandbox], None]:
    def prepare(box: Sandbox) -> None:
        done = box.install("--no-demo", "--version", "5.0.0", *extra)
        assert done.returncode == 0, done.stdout + done.stderr

    return prepare


def tampered_bundle(path: Path) -> None:
    """A bundle whose one file does not match the sha256 its manifest gives."""
    manifest = json.dumps({"format": "dk-installer-bundle", "files": {"dk_installer.py": "0" * 64}}).encode()
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("manifest.json", manifest), ("dk_installer.py", b"print()\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def damaged_receipt(box: Sandbox) -> None:
    box.home.mkdir(parents=True)
    (box.home / "state.json").write_text("{not json")


def shared_over_http(box: Sandbox) -> None:
    """A receipt from before sharing required HTTPS: every address, plain HTTP."""
    installed("--no-start")(box)
    state = json.loads((box.home / "state.json").read_text())
    state["listen"] = "0.0.0.0"
    (box.home / "state.json").write_text(json.dumps(state))


def broken_venv(box: Sandbox) -> None:
    installed("--no-start")(box)
    shutil.rmtree((box.home / "testgen/venv").resolve())


CASES: dict[str, Case] = {
    "success": Case(None, 0, "success", args=lambda box: ["status"]),
    "usage": Case(None, 2, None, args=lambda box: ["install", "--port", "abc"]),
    "busy": Case("busy", 1, "failure", args=lambda box: ["stop"]),
    "bundle_invalid": Case(
        "bundle_invalid",
        1,
        "failure",
        args=lambda box: ["install", "--bundle", str(box.root / "no-such.tar.gz")],
    ),
    "checksum_mismatch": Case(
        "checksum_mismatch",
        1,
        "failure",
        args=lambda box: ["install", "--bundle", str(box.root / "tampered.tar.gz")],
        prepare=lambda box: tampered_bundle(box.root / "tampered.tar.gz"),
    ),
    "backup_failed": Case(
        "backup_failed",
        1,
        "failure",
        "write_backup",
        args=lambda box: ["backup", "--output", "/dev/null/backup.tar.gz"],
        prepare=installed("--no-start"),
    ),
    "backup_invalid": Case(
        "backup_invalid",
        1,
        "failure",
        args=lambda box: ["restore", str(box.root / "no-such-backup.tar.gz"), "--yes"],
        prepare=installed("--no-start"),
    ),
    "disk_full": Case(
        "disk_full",
        3,
        "aborted",
        "preflight",
        ["disk_full"],
        env={"DK_INSTALLER_MIN_FREE_BYTES": str(10**15)},
    ),
    "https_warning": Case(
        "https_warning",
        3,
        "aborted",
        None,
        ["https_warning"],
        args=lambda box: ["doctor"],
        prepare=shared_over_http,
    ),
    "download_failed": Case(
        "download_failed",
        1,
        "failure",
        args=lambda box: ["self-update"],
        env={"DK_INSTALLER_BASE_URL": "http://127.0.0.1:9/release"},  # nothing listens there
    ),
    "home_not_writable": Case("home_not_writable", 3, "aborted", "preflight", ["home_not_writable"]),
    "index_unreachable": Case(
        "index_unreachable",
        1,
        "failure",
        "preflight",
        ["index_unreachable"],
        args=lambda box: box.install_args("--no-demo", "--index-url", "http://127.0.0.1:9/simple"),
    ),
    "interrupted": Case("interrupted", 130, "interrupted", "configure", interrupt_at="configure"),
    "login_failed": Case(
        "login_failed", 1, "failure", "verify_login", env={"FAKE_TESTGEN_REJECT_LOGIN": "1"}
    ),
    "not_installed": Case("not_installed", 1, "failure", args=lambda box: ["start"]),
    "package_install_failed": Case(
        "package_install_failed",
        1,
        "failure",
        "install_package",
        env={"UV_CACHE_DIR": "/dev/null/cache"},  # uv cannot create its cache: not an index problem
        error_type="CommandFailed",
    ),
    "package_not_found": Case(
        "package_not_found",
        1,
        "failure",
        "install_package",
        args=lambda box: box.install_args("--no-demo", "--version", "9.9.9"),
    ),
    "port_in_use": Case("port_in_use", 3, "aborted", "preflight", ["port_in_use"]),
    "python_not_found": Case(
        "python_not_found",
        3,
        "aborted",
        "preflight",
        ["python_not_found"],
        args=lambda box: box.install_args("--no-demo", "--python", "/nonexistent/python3"),
    ),
    "python_too_old": Case(
        "python_too_old",
        3,
        "aborted",
        "preflight",
        ["python_too_old"],
        args=lambda box: box.install_args("--no-demo", "--python", bare_python()),
    ),
    "setup_failed": Case(
        "setup_failed",
        1,
        "failure",
        "configure",
        env={"FAKE_TESTGEN_FAIL": "standalone-setup"},
        error_type="CommandFailed",
    ),
    "start_failed": Case("start_failed", 1, "failure", "start", env={"FAKE_TESTGEN_CRASH_ON_START": "1"}),
    "state_corrupt": Case(
        "state_corrupt", 1, "failure", args=lambda box: ["status"], prepare=damaged_receipt
    ),
    "upgrade_failed": Case(
        "upgrade_failed",
        1,
        "failure",
        "upgrade_database",
        args=lambda box: ["upgrade", "--find-links", str(box.wheelhouse)],
        env={"FAKE_TESTGEN_FAIL": "upgrade-system-version"},
        prepare=installed(),
        error_type="CommandFailed",
    ),
    "service_unavailable": Case(
        "service_unavailable",
        3,
        "aborted",
        None,
        ["service_unavailable"],
        args=lambda box: ["service", "enable"],
        env={"PATH": "/nonexistent"},  # no systemctl (or launchctl) at all
        prepare=installed("--no-start"),
    ),
    "venv_broken": Case(
        "venv_broken", 3, "aborted", None, ["venv_broken"], args=lambda box: ["doctor"], prepare=broken_venv
    ),
    "version_conflict": Case(
        "version_conflict",
        1,
        "failure",
        args=lambda box: box.install_args("--no-demo", "--version", "5.1.0"),
        prepare=installed(),
    ),
}
EVENT_PASSWORD = "an-event-password"


def on_server(
    box: Sandbox,
    *,
    tls: bool = False,
    createdb: bool = True,
    own_database: bool = True,
    database: str | None = None,
    port: int | None = None,
    prepare_sql: str | None = None,
) -> list[str]:
    """install --database on a role and database of their own (made now, on the test servers)."""
    import secrets

    server = box.postgres_tls if tls else box.postgres
    name = secrets.token_hex(4)
    role, dbname = f"ev_{name}", f"ev_{name}"
    server.create_role(role, EVENT_PASSWORD, createdb=createdb)
    server.create_database(dbname, role if own_database else "postgres")
    if prepare_sql:
        server.sql(prepare_sql.format(role=role), database=dbname)
    url = f"postgresql://{role}@127.0.0.1:{port or server.port}/{database or dbname}"
    return box.install_args(
        "--no-demo", "--database", url, *(["--database-sslmode", "disable"] if tls else [])
    )


def server_case(code: str, **server: object) -> Case:
    return Case(
        code,
        3,
        "failure",
        "check_database",
        args=lambda box: on_server(box, **server),  # type: ignore[arg-type]
        env={"PGPASSWORD": EVENT_PASSWORD},
        server=True,
    )


CASES.update(
    {
        "database_unreachable": server_case("database_unreachable", port=free_port()),
        "database_missing": server_case("database_missing", database="no_such_database"),
        "database_tls": server_case("database_tls", tls=True),
        "database_privileges": server_case("database_privileges", createdb=False, own_database=False),
        "database_in_use": server_case(
            "database_in_use", prepare_sql="CREATE SCHEMA testgen AUTHORIZATION {role}"
        ),
    }
)
CASES["database_auth_failed"] = dataclasses.replace(
    server_case("database_auth_failed"), env={"PGPASSWORD": "not-" + EVENT_PASSWORD}
)
# Codes no test can provoke, and why (README's error-code table says the same).
NOT_PROVOKED = {
    "config_not_writable": "doctor's check; with the settings folder unwritable no event can be saved",
    "database_version": "a server older than 13 or newer than 18; test_database.py narrows the range",
    "stop_failed": "needs a process of ours that survives SIGKILL (one we may not signal)",
    "subprocess_failed": "only `uv python find` failing right after `uv python install` succeeded",
    "unexpected": "a bug; test_privacy pushes arbitrary exceptions through perform() instead",
    "update_failed": "needs an HTTPS mirror serving a file that does not run (tests/test_selfupdate.py)",
}


def events(stderr: str) -> list[dict]:
    return [json.loads(line.split(": ", 1)[1]) for line in stderr.splitlines() if "analytics debug" in line]


def test_the_table_covers_every_error_code_and_exit_code() -> None:
    assert {c.code for c in CASES.values() if c.code} | set(NOT_PROVOKED) == set(ERROR_CODES)
    readme = (ROOT / "README.md").read_text()
    exit_table = readme.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    documented_exits = set(re.findall(r"^\| (\d+) \|", exit_table, re.M))
    assert documented_exits == {str(c.exit_code) for c in CASES.values()}
    table = readme.split("| `error_code` | when |", 1)[1].split("\n\n", 1)[0]
    for code, reason in NOT_PROVOKED.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{code}` |"))
        assert "no test" in row, f"README should say why {code} is never provoked: {reason}"


@pytest.mark.parametrize("name", list(CASES))
def test_each_failure_records_one_event_that_says_what_happened(
    sandbox: Sandbox, request: pytest.FixtureRequest, name: str
) -> None:
    case = CASES[name]
    if case.server:
        sandbox.postgres = request.getfixturevalue("postgres_server")  # type: ignore[attr-defined]
        sandbox.postgres_tls = request.getfixturevalue("postgres_tls_server")  # type: ignore[attr-defined]
    case.prepare(sandbox)
    env = {**DEBUG, **case.env}
    if name == "home_not_writable":
        blocker = sandbox.root / "a-file"
        blocker.write_text("")
        env["DK_INSTALLER_HOME"] = str(blocker / "home")
    lock = None
    if name == "busy":
        sandbox.home.mkdir(parents=True, exist_ok=True)
        lock = open(sandbox.home / ".lock", "a+")  # noqa: SIM115 (held for the run)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    squatter = None
    if name == "port_in_use":
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", sandbox.ui_port))
        squatter.listen()
    try:
        if case.interrupt_at:
            process = sandbox.popen(
                *case.args(sandbox), env={**env, "DK_INSTALLER_FAILPOINT": case.interrupt_at}
            )
            wait_for_line(process, f"failpoint {case.interrupt_at}")
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=120)
            returncode = process.returncode
        else:
            result = sandbox.run(*case.args(sandbox), env=env)
            stdout, stderr, returncode = result.stdout, result.stderr, result.returncode
    finally:
        if lock:
            lock.close()
        if squatter:
            squatter.close()
    assert returncode == case.exit_code, stdout + stderr
    recorded = events(stderr)
    if case.outcome is None:
        assert recorded == []
        return
    [event] = recorded
    props = event["properties"]
    assert (props["outcome"], props["error_code"], props["failed_step"]) == (
        case.outcome,
        case.code,
        case.failed_step,
    )
    assert props["missing_requirements"] == case.missing
    assert props["error_type"] == (case.error_type if case.outcome == "failure" else None)
    if name == "login_failed":
        assert props["login_success"] is False


def test_the_notice_comes_before_the_first_step_of_the_first_action(sandbox: Sandbox) -> None:
    combined = subprocess.run(
        [sys.executable, str(ROOT / "dk_installer.py"), *sandbox.install_args("--no-demo", "--no-start")],
        env=sandbox.merged_env(DEBUG),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    ).stdout
    assert "anonymous usage analytics" in combined and "Check requirements" in combined
    assert combined.index("anonymous usage analytics") < combined.index("Check requirements")
    assert "TestGen has analytics of its own" in combined
    assert len(events(combined)) == 1  # the event of that run is still recorded at its end
