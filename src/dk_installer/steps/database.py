"""TestGen's data on the user's PostgreSQL server: the connection check, setting TestGen up there
(install --database), moving an embedded install's data there (migrate-database), and the schema
dump that guards an upgrade. The server's database is the user's: the installer only ever creates,
replaces or drops TestGen's schema in it (and the demo database it made itself)."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.bootstrap import EXIT_REQUIREMENTS
from dk_installer.config import write_file_atomically
from dk_installer.database import DatabaseTarget, connect, drop_schema, probe, read_password
from dk_installer.errors import ErrorCode, InstallerError, StepSkipped
from dk_installer.runner import redact
from dk_installer.steps.base import Step
from dk_installer.testgen.config import (
    ADMIN_USERNAME,
    EMBEDDED_DEMO_DATABASE,
    EMBEDDED_HOST,
    TestGenConfig,
    demo_database,
    write_credentials,
)
from dk_installer.testgen.dumps import (
    SERVER_KEYS,
    drop_aside,
    drop_created_schema,
    drop_demo_database,
    drop_schema_of,
    dump_embedded,
    dump_schema,
    encrypt_for_testgen,
    owner_session,
    put_schema_back,
    replace_schema,
    run_sql_file,
    server_settings,
)

if TYPE_CHECKING:
    from dk_installer.console import Progress
    from dk_installer.journal import JournalRecord
    from dk_installer.paths import Paths
    from dk_installer.steps.base import ActionContext

log = logging.getLogger("dk_installer")

# The keys that decrypt stored connection passwords and sign tokens: they live in config.env, not on
# the server, so a schema on a server is only usable with the keys of the install that made it.
KEY_NAMES = ("TG_DECRYPT_SALT", "TG_DECRYPT_PASSWORD", "TG_JWT_HASHING_KEY")


def choose_database(ctx: ActionContext, url: str) -> None:
    """The server from the options, and its passwords (a file, PGPASSWORD, or a hidden prompt; never
    argv). Before any step: a prompt cannot sit under a progress line."""
    options = ctx.options
    target = DatabaseTarget.parse(
        url,
        sslmode=options.database_sslmode,
        ca_file=options.database_ca_file,
        admin_user=options.database_admin_user,
    )
    interactive = sys.stdin.isatty()
    password = read_password(
        env=os.environ,
        password_file=options.database_password_file,
        prompt=f"Password of {target.user} on {target.host}:{target.port}",
        interactive=interactive,
    )
    redact.add(password)
    admin_password = None
    if target.admin_user:
        admin_password = read_password(
            env={},
            password_file=options.database_admin_password_file,
            prompt=f"Password of {target.admin_user} on {target.host}:{target.port}",
            interactive=interactive,
        )
        redact.add(admin_password)
    ctx.database, ctx.database_password, ctx.database_admin_password = target, password, admin_password


def read_keys(path: str | None) -> dict[str, str] | None:
    """TestGen's keys from a file of KEY=VALUE lines (the config.env of the install that made the
    schema, or the one in its backup), or None when no file was given."""
    if path is None:
        return None
    keys = {key: value for key, value in TestGenConfig(Path(path)).read().items() if key in KEY_NAMES}
    missing = [name for name in KEY_NAMES if not keys.get(name)]
    if missing:
        raise InstallerError(
            f"{path} lacks {', '.join(missing)}: give the config.env of the install that made "
            "TestGen's schema.",
            code=ErrorCode.DATABASE_IN_USE,
            exit_code=EXIT_REQUIREMENTS,
        )
    return keys


class CheckDatabase(Step):
    """Connect before anything is written: the server answers, the login works, TLS as asked, the
    database exists, the privileges suffice, the version is one TestGen runs on."""

    name = "check_database"
    title = "Check the PostgreSQL server"
    side_effects = False

    def __init__(self, schema: str = "new or with its keys") -> None:
        # install: a new schema, or one with the keys of the install that made it; migrate-database:
        # none there yet; configure --database: TestGen's schema must be there (the same data, reached
        # another way: a moved server, a new password, another TLS mode).
        self.schema = schema

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        target = ctx.database
        assert target and ctx.database_password is not None
        progress.update(f"connecting to {target.host}:{target.port}")
        facts = probe(target, ctx.database_password, ctx.database_admin_password)
        ctx.server = facts
        keys = read_keys(ctx.options.database_keys_file)
        where = f"The database {target.dbname} on {target.host}:{target.port}"
        problem = None
        if self.schema == "existing" and not facts.schema_exists:
            problem = (
                f"{where} holds no TestGen schema '{target.schema}': configure --database reaches the "
                "same data another way. To move the data, back it up and restore it on the new server."
            )
        elif facts.schema_exists and self.schema == "absent":
            problem = f"{where} already holds a TestGen schema '{target.schema}'; migrate-database never "
            problem += "writes over it."
        elif facts.schema_exists and self.schema != "existing" and keys is None:
            problem = (
                f"{where} already holds a TestGen schema '{target.schema}'. To use it, give the keys of the "
                "install that made it: --database-keys-file (its config.env, or the one in its backup)."
            )
        if problem:
            raise InstallerError(problem, code=ErrorCode.DATABASE_IN_USE, exit_code=EXIT_REQUIREMENTS)
        ctx.database_keys = keys
        tls = "TLS" if facts.tls else "no TLS"
        progress.result = f"PostgreSQL {facts.version} at {target.host}:{target.port}, {tls}"


class CheckDemoRoom(Step):
    """The demo's data moves to a database of its own on the server: the server must let the user
    make it, and none of that name may be there."""

    name = "check_demo_room"
    title = "Check room for the demo's database"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        target, facts = ctx.database, ctx.server
        assert target and facts and ctx.database_password is not None
        if not (ctx.state and ctx.state.demo_data):
            progress.result = "no demo data to move"
            return
        demo = demo_database(target.dbname)
        if not facts.can_create_database:
            raise InstallerError(
                f"The demo's data moves to its own database ({demo}), and {target.user} may not "
                f"create databases on {target.host}:{target.port}. Grant it CREATEDB "
                f"(ALTER ROLE {target.user} CREATEDB), or give --database-admin-user a role that may.",
                code=ErrorCode.DATABASE_PRIVILEGES,
                exit_code=EXIT_REQUIREMENTS,
            )
        session = connect(target, ctx.database_password, database="postgres")
        try:
            taken = session.run("SELECT 1 FROM pg_database WHERE datname = :name", name=demo)
        finally:
            session.close()
        if taken:
            raise InstallerError(
                f"{target.host}:{target.port} already has a database {demo}, where the demo's "
                "data would go; migrate-database never writes over it.",
                code=ErrorCode.DATABASE_IN_USE,
                exit_code=EXIT_REQUIREMENTS,
            )
        progress.result = f"{demo} can be made"


class ConfigureOnServer(Step):
    """config.env for a server (TestGen's own settings, without its embedded PostgreSQL), then
    `testgen setup-system-db` makes TestGen's schema; a schema that is there already (with its
    keys) is upgraded to this version instead."""

    name = "configure_database"
    title = "Set up TestGen on the PostgreSQL server"

    def __init__(self) -> None:
        self.created_home = False
        self.created_schema = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        paths, testgen, target = ctx.paths, ctx.testgen, ctx.database
        assert target and ctx.database_password is not None and ctx.server
        self.created_home = True
        paths.testgen_home.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(15)
        redact.add(password)
        ctx.password = password
        keys = ctx.database_keys or {
            "TG_DECRYPT_SALT": secrets.token_hex(8),
            "TG_DECRYPT_PASSWORD": secrets.token_hex(12),
            # TestGen base64-decodes its token key: a key that is not base64 makes every login a 500.
            "TG_JWT_HASHING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        settings = {
            "TESTGEN_USERNAME": ADMIN_USERNAME,
            "TESTGEN_PASSWORD": password,
            **keys,
            "TESTGEN_LOG_FILE_PATH": str(paths.testgen_logs),
            "TG_ANALYTICS": "yes" if ctx.analytics_enabled else "no",
            "TG_INSTANCE_ID": secrets.token_hex(8),
            "TG_TARGET_DB_TRUST_SERVER_CERTIFICATE": "yes",
            "TG_EXPORT_TO_OBSERVABILITY_VERIFY_SSL": "no",
            "TG_UI_PORT": str(testgen.ui_port),
            "TG_API_PORT": str(testgen.api_port),
            **server_settings(target, ctx.database_password, ctx.database_admin_password),
        }
        lines = [
            "# TestGen on a PostgreSQL server, written by dk-installer",
            *(f"{k}={v}" for k, v in settings.items()),
        ]
        write_file_atomically(paths.config_env, "\n".join(lines) + "\n", mode=0o600)
        # What standalone-setup does for Streamlit: without it run-app may wait for an e-mail prompt.
        streamlit = paths.testgen_home / ".streamlit" / "credentials.toml"
        streamlit.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(streamlit, '[general]\nemail = ""\n')
        if ctx.server.schema_exists:
            progress.update("upgrading the existing schema to this TestGen version")
            testgen.cli(
                "upgrade-system-version", progress=progress, timeout=900, error_code=ErrorCode.SETUP_FAILED
            )
            ctx.kept_data = True
        else:
            self.created_schema = True
            ctx.journal.record(schema_created=True)
            progress.update(f"creating schema {target.schema} in {target.dbname}")
            testgen.cli(
                "setup-system-db", "--yes", progress=progress, timeout=900, error_code=ErrorCode.SETUP_FAILED
            )
        testgen.patch_streamlit(progress)
        write_credentials(paths, ADMIN_USERNAME, password, testgen.ui_url)
        progress.result = f"schema {target.schema} in {target.url()}"

    def undo(self, ctx: ActionContext) -> None:
        if self.created_schema and ctx.database and ctx.database_password is not None:
            ctx.testgen.stop()
            drop_created_schema(ctx.database, ctx.database_password, ctx.database_admin_password)
        if self.created_home:
            ctx.testgen.stop()
            shutil.rmtree(ctx.paths.testgen_home, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                ctx.paths.credentials.unlink()

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        if entry.schema_created:
            drop_schema_of(TestGenConfig(paths.config_env).read())
        if entry.home_existed is False:
            shutil.rmtree(paths.testgen_home, ignore_errors=True)
        if entry.credentials_existed is False:
            with contextlib.suppress(FileNotFoundError):
                paths.credentials.unlink()


UPGRADE_DUMP = "upgrade-schema.dump"  # in the installer's tmp folder, while an upgrade runs


class DumpSchema(Step):
    """Before TestGen changes its schema on the server (upgrade), a dump of it; the rollback puts
    it back in one transaction."""

    name = "dump_schema"
    title = "Dump TestGen's schema on the server"

    def __init__(self) -> None:
        self.archive: Path | None = None

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        config = ctx.testgen.config.read()
        target = DatabaseTarget.from_testgen_settings(config)
        if target is None:
            raise StepSkipped("the embedded database is in the copy of TestGen's home")
        self.archive = ctx.paths.tmp / UPGRADE_DUMP
        self.archive.parent.mkdir(parents=True, exist_ok=True)
        dump_schema(ctx.paths.venv, target, config.get("TG_METADATA_DB_PASSWORD", ""), self.archive, progress)
        progress.result = f"{self.archive.stat().st_size // 1024} KB"

    def undo(self, ctx: ActionContext) -> None:
        if self.archive is None or not self.archive.exists():
            return
        config = ctx.testgen.config.read()
        target = DatabaseTarget.from_testgen_settings(config)
        assert target
        with ctx.console.step("Put TestGen's schema back on the server") as progress:
            replace_schema(ctx.paths.venv, target, config, self.archive, progress)
        self.archive.unlink()

    def commit(self, ctx: ActionContext) -> None:
        if self.archive is not None:
            with contextlib.suppress(FileNotFoundError):
                self.archive.unlink()

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        """After a kill in an upgrade: the venv link is back on the old TestGen (recovery undoes the
        newer steps first), so its pg_restore puts the dumped schema back."""
        archive = paths.tmp / UPGRADE_DUMP
        config = TestGenConfig(paths.config_env).read()
        target = DatabaseTarget.from_testgen_settings(config)
        if archive.exists() and target is not None and entry.step != cls.name:
            replace_schema(paths.venv, target, config, archive, None)
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            (paths.tmp / UPGRADE_DUMP).unlink()


class DumpEmbedded(Step):
    """migrate-database: TestGen's schema and the demo database out of the embedded PostgreSQL,
    as SQL (the embedded data itself stays as it is)."""

    name = "dump_embedded"
    title = "Dump TestGen's data from the embedded PostgreSQL"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        folder = ctx.paths.tmp / "migration"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)
        ctx.migration_dumps = (
            folder / "testgen.sql",
            folder / "demo.sql" if ctx.state and ctx.state.demo_data else None,
        )
        app_dump, demo_dump = ctx.migration_dumps
        testgen = ctx.testgen
        dump_embedded(
            ctx.paths.venv,
            testgen.environment(),
            testgen.working_dir,
            ctx.paths.pgdata,
            app_dump,
            demo_dump,
            progress,
        )
        size = sum(path.stat().st_size for path in ctx.migration_dumps if path)
        progress.result = f"{size / 1024:.1f} KB of SQL"

    def undo(self, ctx: ActionContext) -> None:
        shutil.rmtree(ctx.paths.tmp / "migration", ignore_errors=True)

    def commit(self, ctx: ActionContext) -> None:
        self.undo(ctx)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        shutil.rmtree(paths.tmp / "migration", ignore_errors=True)


class LoadIntoServer(Step):
    """migrate-database: the dumps into the server (each in one transaction), then the demo's
    connection pointed at the server, where its database now is."""

    name = "load_into_server"
    title = "Load TestGen's data into the PostgreSQL server"

    def __init__(self) -> None:
        self.created_schema = False
        self.created_demo = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        target, password = ctx.database, ctx.database_password
        assert target and password is not None and ctx.migration_dumps
        app_dump, demo_dump = ctx.migration_dumps
        venv = ctx.paths.venv
        # A kill from here on is recovered from this file: it names what to drop on the server.
        pending = ctx.paths.config_env.with_name(PENDING_CONFIG)
        settings = target.testgen_settings(password, ctx.database_admin_password)
        write_file_atomically(pending, "".join(f"{k}={v}\n" for k, v in settings.items()), mode=0o600)
        self.created_schema = True
        ctx.journal.record(schema_created=True)
        progress.update(f"schema {target.schema} into {target.dbname}")
        run_sql_file(venv, target, password, app_dump, target.dbname, progress)
        if demo_dump is None:
            return
        demo = demo_database(target.dbname)
        session = owner_session(target, settings, "postgres")
        try:
            session.run(f'CREATE DATABASE "{demo}"')
        finally:
            session.close()
        self.created_demo = True
        ctx.journal.record(demo_database_created=True)
        progress.update(f"the demo's data into {demo}")
        run_sql_file(venv, target, password, demo_dump, demo, progress)
        testgen = ctx.testgen
        encrypted = encrypt_for_testgen(venv, testgen.environment(), testgen.working_dir, password)
        session = connect(target, password)
        try:
            session.run(
                f'UPDATE "{target.schema}".connections SET project_host = :host, project_port = :port, '
                "project_user = :user, project_pw_encrypted = :secret, project_db = :demo "
                "WHERE project_host = :embedded AND project_db = :embedded_demo",
                host=target.host,
                port=str(target.port),
                user=target.user,
                secret=encrypted.encode(),
                embedded=EMBEDDED_HOST,
                demo=demo,
                embedded_demo=EMBEDDED_DEMO_DATABASE,
            )
        finally:
            session.close()
        progress.result = f"{target.schema} and {demo} on {target.host}:{target.port}"

    def undo(self, ctx: ActionContext) -> None:
        self.commit(ctx)
        target = ctx.database
        if target is None or ctx.database_password is None:
            return
        if self.created_schema:
            drop_created_schema(target, ctx.database_password, ctx.database_admin_password)
        if self.created_demo:
            drop_demo_database(target, ctx.database_password, ctx.database_admin_password)

    def commit(self, ctx: ActionContext) -> None:
        with contextlib.suppress(FileNotFoundError):
            ctx.paths.config_env.with_name(PENDING_CONFIG).unlink()

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        pending = paths.config_env.with_name(PENDING_CONFIG)
        config = TestGenConfig(pending).read()
        if entry.schema_created:
            drop_schema_of(config)
        target = DatabaseTarget.from_testgen_settings(config)
        if entry.demo_database_created and target is not None:
            password = config.get("TG_METADATA_DB_PASSWORD", "")
            drop_demo_database(target, password, config.get("TG_METADATA_DB_ADMIN_PASSWORD"))
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            paths.config_env.with_name(PENDING_CONFIG).unlink()


SAVED_CONFIG = "config.env.before"  # config.env before it named this server, until the action is done
PENDING_CONFIG = "config.env.server"  # the server's settings, written before the switch (for a recovery)


class SwitchToServer(Step):
    """migrate-database and configure --database: config.env now names the server (and TestGen
    leaves standalone mode). The config.env before is kept aside until the action is done; the
    rollback puts it back."""

    name = "switch_to_server"
    title = "Point TestGen at the PostgreSQL server"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        target, password = ctx.database, ctx.database_password
        assert target and password is not None
        config = ctx.testgen.config
        saved = ctx.paths.config_env.with_name(SAVED_CONFIG)
        shutil.copy2(ctx.paths.config_env, saved)
        saved.chmod(0o600)
        changes: dict[str, str | None] = dict.fromkeys(SERVER_KEYS)
        if config.read().get("TG_STANDALONE_MODE"):
            changes.update(server_settings(target, password, ctx.database_admin_password))
        else:  # configure --database: the demo's database keeps its name
            changes.update(target.testgen_settings(password, ctx.database_admin_password))
        config.update(TG_STANDALONE_MODE=None, **changes)
        progress.result = target.url()

    def undo(self, ctx: ActionContext) -> None:
        put_back_config(ctx.paths)

    def commit(self, ctx: ActionContext) -> None:
        with contextlib.suppress(FileNotFoundError):
            ctx.paths.config_env.with_name(SAVED_CONFIG).unlink()

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        put_back_config(paths)

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            paths.config_env.with_name(SAVED_CONFIG).unlink()


def put_back_config(paths: Paths) -> None:
    saved = paths.config_env.with_name(SAVED_CONFIG)
    if saved.exists():
        saved.replace(paths.config_env)


def server_of(ctx: ActionContext) -> tuple[DatabaseTarget, dict[str, str]] | None:
    config = ctx.testgen.config.read()
    target = DatabaseTarget.from_testgen_settings(config)
    return (target, config) if target else None


class DropSchema(Step):
    """uninstall --drop-schema: TestGen's schema, and nothing else (the database is the user's)."""

    name = "drop_schema"
    title = "Drop TestGen's schema on the server"
    required = False

    def __init__(self, target: DatabaseTarget, config: dict[str, str]) -> None:
        self.target = target
        self.config = config

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        config = self.config
        drop_schema(
            self.target,
            config.get("TG_METADATA_DB_PASSWORD", ""),
            config.get("TG_METADATA_DB_ADMIN_PASSWORD"),
        )
        progress.result = f"{self.target.schema} in {self.target.url()}"


class BackupSchema(Step):
    """backup of a server install: TestGen's schema with pg_dump while TestGen keeps running (a
    dump is one consistent snapshot); the archive takes it beside the copy of TestGen's home."""

    name = "backup_schema"
    title = "Dump TestGen's schema on the server"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        server = server_of(ctx)
        assert server
        target, config = server
        dump_schema(
            ctx.paths.venv,
            target,
            config.get("TG_METADATA_DB_PASSWORD", ""),
            ctx.paths.backup_schema,
            progress,
        )
        progress.result = f"{ctx.paths.backup_schema.stat().st_size // 1024} KB from {target.url()}"

    def undo(self, ctx: ActionContext) -> None:
        with contextlib.suppress(FileNotFoundError):
            ctx.paths.backup_schema.unlink()

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            paths.backup_schema.unlink()


class LoadSchemaDump(Step):
    """restore of a server backup: its schema dump replaces TestGen's schema on the server the
    restored config.env names. The schema that was there is kept aside (renamed) until the
    restored data runs, and comes back on any failure."""

    name = "load_schema_dump"
    title = "Restore TestGen's schema on the server"

    def __init__(self) -> None:
        self.aside: tuple[DatabaseTarget, dict[str, str]] | None = None

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        archive = ctx.paths.restore_staging / "schema.dump"
        if not archive.exists():
            raise StepSkipped("the backup holds an embedded database")
        server = server_of(ctx)
        if server is None:
            raise InstallerError(
                "The backup has a schema dump but its config.env names no server.",
                code=ErrorCode.BACKUP_INVALID,
            )
        target, config = server
        self.aside = server
        ctx.journal.record(schema_created=True)
        replace_schema(ctx.paths.venv, target, config, archive, progress, keep_aside=True)
        progress.result = f"{target.schema} in {target.url()}"

    def undo(self, ctx: ActionContext) -> None:
        if self.aside:
            put_schema_back(*self.aside)

    def commit(self, ctx: ActionContext) -> None:
        if self.aside:
            drop_aside(*self.aside)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        """Before the safety copy of the home comes back (recovery goes newest first), the home in
        place is the restored one, which names the server."""
        target = DatabaseTarget.from_testgen_settings(config := TestGenConfig(paths.config_env).read())
        if target is not None and entry.schema_created:
            put_schema_back(target, config)

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        target = DatabaseTarget.from_testgen_settings(config := TestGenConfig(paths.config_env).read())
        if target is not None:
            drop_aside(target, config)
