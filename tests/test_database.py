"""database.py against real PostgreSQL servers (tests/pg_server.py): the URL and TestGen's
settings, the password's sources, what probe() learns, and each way a server can fail the
preflight (exit 3, its error code, a message that names the server and never the password)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import uuid
from pathlib import Path

import click
import pytest
import trustme
from conftest import free_port
from pg_server import PostgresServer

from dk_installer import database
from dk_installer.bootstrap import EXIT_REQUIREMENTS, EXIT_USAGE
from dk_installer.database import DatabaseTarget, drop_schema, probe, read_password, schema_tables
from dk_installer.errors import ErrorCode, InstallerError


@dataclasses.dataclass
class App:
    """A role and a database of its own on a test server."""

    server: PostgresServer
    user: str
    password: str
    dbname: str

    def target(self, **options: str | None) -> DatabaseTarget:
        return DatabaseTarget.parse(self.server.url(self.user, self.dbname), **options)

    def sql(self, statement: str) -> list[list[object]]:
        return self.server.sql(statement, database=self.dbname)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_app(server: PostgresServer, *, owner: bool = True, createdb: bool = False) -> App:
    """A new role (with a password full of characters that need quoting) and a new database,
    owned by that role or, with owner=False, by the superuser."""
    user, dbname = unique("app"), unique("db")
    password = f"pw'{secrets.token_urlsafe(12)}\"x"
    server.create_role(user, password, createdb=createdb)
    server.create_database(dbname, user if owner else "postgres")
    return App(server, user, password, dbname)


def refused(excinfo: pytest.ExceptionInfo[InstallerError], code: ErrorCode, *secrets_: str) -> str:
    error = excinfo.value
    assert error.exit_code == EXIT_REQUIREMENTS
    assert error.code == code, error.message
    for secret in secrets_:
        assert secret not in f"{error.message} {error.details} {error!r}"
    return error.message


# -- the URL and TestGen's settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app@db.example.com/tg", ("app", "db.example.com", 5432, "tg")),
        ("postgres://app@db.example.com:6543/tg", ("app", "db.example.com", 6543, "tg")),
        ("postgresql://us%40er@[::1]:5433/my%20db", ("us@er", "::1", 5433, "my db")),
        ("postgresql://App@DB.Example.com:1/x", ("App", "db.example.com", 1, "x")),
    ],
)
def test_parse_reads_user_host_port_and_database(url: str, expected: tuple[str, str, int, str]) -> None:
    target = DatabaseTarget.parse(url)
    assert (target.user, target.host, target.port, target.dbname) == expected
    assert (target.sslmode, target.ca_file, target.admin_user, target.schema) == (None, None, None, "testgen")
    assert DatabaseTarget.parse(target.url()) == target


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://app:s3cret-Pw@db.example.com/tg", "must not carry a password"),
        ("postgresql://app:@db.example.com/tg", "must not carry a password"),
        ("postgresql://app:s3cret-Pw@db.example.com/tg?sslmode=require", "must not carry a password"),
        ("mysql://app@db.example.com/tg", "must start with postgresql://"),
        ("db.example.com/tg", "must start with postgresql://"),
        ("postgresql://db.example.com/tg", "names no user"),
        ("postgresql://app@/tg", "names no host"),
        ("postgresql://app@%2Fvar%2Frun%2Fpostgresql/tg", "a Unix socket folder is not supported"),
        ("postgresql://app@db.example.com", "names no database"),
        ("postgresql://app@db.example.com/", "names no database"),
        ("postgresql://app@db.example.com/tg/x", "names no database"),
        ("postgresql://app@db.example.com:0/tg", "port must be a number"),
        ("postgresql://app@db.example.com:65536/tg", "port must be a number"),
        ("postgresql://app@db.example.com:five/tg", "port must be a number"),
        ("postgresql://app@db.example.com/tg?sslmode=require", "takes no parameters"),
        ("postgresql://app@db.example.com/tg#x", "takes no parameters"),
    ],
)
def test_parse_refuses_a_bad_url_without_echoing_a_password(url: str, problem: str) -> None:
    with pytest.raises(InstallerError) as excinfo:
        DatabaseTarget.parse(url)
    assert excinfo.value.exit_code == EXIT_USAGE
    assert problem in excinfo.value.message
    assert "s3cret-Pw" not in excinfo.value.message


def test_parse_checks_sslmode_and_the_ca_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://app@db.example.com/tg"
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for options, problem in [
        ({"sslmode": "always"}, "is not one of disable, allow, prefer, require, verify-ca, verify-full"),
        ({"sslmode": "verify-ca"}, "verify-ca needs the CA file"),
        (
            {"sslmode": "verify-full", "ca_file": str(tmp_path / "none.pem")},
            "does not exist or cannot be read",
        ),
        ({"ca_file": str(tmp_path)}, "does not exist or cannot be read"),
    ]:
        with pytest.raises(InstallerError) as excinfo:
            DatabaseTarget.parse(url, **options)
        assert excinfo.value.exit_code == EXIT_USAGE
        assert problem in excinfo.value.message
    monkeypatch.chdir(tmp_path)
    target = DatabaseTarget.parse(url, sslmode="verify-ca", ca_file="ca.pem", admin_user="owner")
    assert (target.sslmode, target.ca_file, target.admin_user) == ("verify-ca", str(ca), "owner")
    assert DatabaseTarget.parse(url, sslmode="verify-full").ca_file is None  # the system trust store


def test_testgen_settings_round_trip(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    full = DatabaseTarget.parse(
        "postgresql://app@db.example.com:6543/tg", sslmode="verify-full", ca_file=str(ca), admin_user="owner"
    )
    settings = full.testgen_settings("app-pw", "admin-pw")
    assert settings == {
        "TG_METADATA_DB_HOST": "db.example.com",
        "TG_METADATA_DB_PORT": "6543",
        "TG_METADATA_DB_USER": "app",
        "TG_METADATA_DB_PASSWORD": "app-pw",
        "TG_METADATA_DB_NAME": "tg",
        "TG_METADATA_DB_SCHEMA": "testgen",
        "TG_METADATA_DB_SSLMODE": "verify-full",
        "TG_METADATA_DB_SSLROOTCERT": str(ca),
        "TG_METADATA_DB_ADMIN_USER": "owner",
        "TG_METADATA_DB_ADMIN_PASSWORD": "admin-pw",
    }
    assert DatabaseTarget.from_testgen_settings({**settings, "TESTGEN_USERNAME": "admin"}) == full
    plain = DatabaseTarget.parse("postgresql://app@db.example.com/tg")
    assert set(plain.testgen_settings("app-pw", "ignored")) == {
        f"TG_METADATA_DB_{key}" for key in ("HOST", "PORT", "USER", "PASSWORD", "NAME", "SCHEMA")
    }
    assert DatabaseTarget.from_testgen_settings(plain.testgen_settings("app-pw", None)) == plain
    assert "TG_METADATA_DB_ADMIN_PASSWORD" not in dataclasses.replace(plain, admin_user="o").testgen_settings(
        "app-pw", None
    )
    assert DatabaseTarget.from_testgen_settings({"TESTGEN_USERNAME": "admin"}) is None


# -- the password -------------------------------------------------------------------------------


def secret_file(tmp_path: Path, content: str, mode: int = 0o600) -> str:
    path = tmp_path / "pw"
    path.write_text(content)
    path.chmod(mode)
    return str(path)


def test_read_password_takes_the_file_then_pgpassword_then_the_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, bool]] = []

    def prompt(text: str, hide_input: bool = False) -> str:
        asked.append((text, hide_input))
        return "typed"

    monkeypatch.setattr(click, "prompt", prompt)
    env = {"PGPASSWORD": "from-env"}
    path = secret_file(tmp_path, "from-file\n")
    assert read_password(env=env, password_file=path, prompt="Password", interactive=True) == "from-file"
    assert read_password(env=env, password_file=None, prompt="Password", interactive=True) == "from-env"
    assert read_password(env={}, password_file=None, prompt="Password", interactive=True) == "typed"
    assert asked == [("Password", True)]
    with pytest.raises(InstallerError) as excinfo:
        read_password(env={"PGPASSWORD": ""}, password_file=None, prompt="Password", interactive=False)
    assert excinfo.value.exit_code == EXIT_USAGE
    for way in ("--database-password-file", "PGPASSWORD", "terminal"):
        assert way in excinfo.value.message


@pytest.mark.parametrize(
    ("content", "password"),
    [("pw\n", "pw"), ("pw", "pw"), ("pw\r\n", "pw"), ("pw\n\n", "pw\n"), (" p w \n", " p w ")],
)
def test_read_password_drops_one_trailing_newline(tmp_path: Path, content: str, password: str) -> None:
    path = secret_file(tmp_path, content, 0o400)
    assert read_password(env={}, password_file=path, prompt="", interactive=False) == password


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("group-readable", "open to group or others (mode 0640)"),
        ("world-readable", "open to group or others (mode 0604)"),
        ("group-writable", "open to group or others (mode 0620)"),
        ("folder", "not a regular file"),
        ("fifo", "not a regular file"),
        ("missing", "cannot be opened"),
        ("empty", "is empty"),
        ("binary", "not UTF-8 text"),
    ],
)
def test_read_password_refuses_a_file_others_can_read_or_that_is_not_a_file(
    tmp_path: Path, kind: str, problem: str
) -> None:
    path = tmp_path / "pw"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "empty":
        secret_file(tmp_path, "")
    elif kind == "binary":
        path.write_bytes(b"s3cret-\xff\xfe")
        path.chmod(0o600)
    elif kind != "missing":
        mode = {"group-readable": 0o640, "world-readable": 0o604, "group-writable": 0o620}[kind]
        secret_file(tmp_path, "s3cret-pw", mode)
    with pytest.raises(InstallerError) as excinfo:
        read_password(env={"PGPASSWORD": "x"}, password_file=str(path), prompt="", interactive=True)
    assert excinfo.value.exit_code == EXIT_USAGE
    assert problem in excinfo.value.message
    assert "s3cret" not in excinfo.value.message


# -- what probe() learns ----------------------------------------------------------------------


def test_probe_reports_a_fresh_database(postgres_server: PostgresServer) -> None:
    app = make_app(postgres_server)
    facts = probe(app.target(), app.password)
    assert facts.version.startswith(f"{facts.major}.")
    assert facts.major in database.SUPPORTED_MAJORS
    assert (facts.tls, facts.schema_exists, facts.testgen_revision, facts.other_objects) == (
        False,
        False,
        None,
        False,
    )
    assert (facts.can_create_schema, facts.can_create_database) == (True, False)
    creator = make_app(postgres_server, createdb=True)
    assert probe(creator.target(), creator.password).can_create_database


def test_probe_reports_testgens_schema_and_other_objects(postgres_server: PostgresServer) -> None:
    app = make_app(postgres_server)
    app.sql(
        f'CREATE SCHEMA testgen AUTHORIZATION "{app.user}"; '
        "CREATE TABLE testgen.tg_revision (component VARCHAR(50) PRIMARY KEY, revision INTEGER); "
        "INSERT INTO testgen.tg_revision VALUES ('metadata_db', 1234);"
        f'ALTER TABLE testgen.tg_revision OWNER TO "{app.user}"'
    )
    facts = probe(app.target(), app.password)
    assert (facts.schema_exists, facts.testgen_revision, facts.other_objects) == (True, "1234", False)
    app.sql("CREATE TABLE public.mine (id int)")
    assert probe(app.target(), app.password).other_objects
    other = make_app(postgres_server)
    other.sql("CREATE SCHEMA sales")
    assert probe(other.target(), other.password).other_objects


def test_probe_checks_the_admin_users_privileges(postgres_server: PostgresServer) -> None:
    """The app user may not create the schema; the admin user (the database's owner) may."""
    admin = make_app(postgres_server)
    user, password = unique("app"), secrets.token_urlsafe(12)
    postgres_server.create_role(user, password)
    target = DatabaseTarget.parse(postgres_server.url(user, admin.dbname), admin_user=admin.user)
    facts = probe(target, password, admin.password)
    assert (facts.schema_exists, facts.can_create_schema) == (False, True)
    with pytest.raises(InstallerError) as excinfo:
        probe(target, password, "not-the-admin-pw")
    assert admin.user in refused(excinfo, ErrorCode.DATABASE_AUTH_FAILED, password, "not-the-admin-pw")


SSLMODES_PLAIN_SERVER = {
    "disable": None,
    "allow": None,
    "prefer": None,
    "require": "does not offer TLS, which sslmode require needs",
    "verify-ca": "does not offer TLS, which sslmode verify-ca needs",
    "verify-full": "does not offer TLS, which sslmode verify-full needs",
}
SSLMODES_TLS_SERVER = {
    "disable": "lets user {user} in only over TLS",
    "allow": None,
    "prefer": None,
    "require": None,
    "verify-ca": None,
    "verify-full": None,
}


@pytest.mark.parametrize("tls", [False, True], ids=["plain-server", "tls-only-server"])
@pytest.mark.parametrize("sslmode", database.SSL_MODES)
def test_each_sslmode_against_a_plain_and_a_tls_only_server(
    postgres_server: PostgresServer, postgres_tls_server: PostgresServer, tls: bool, sslmode: str
) -> None:
    server = postgres_tls_server if tls else postgres_server
    app = make_app(server)
    target = app.target(sslmode=sslmode, ca_file=str(postgres_tls_server.ca_file))
    problem = (SSLMODES_TLS_SERVER if tls else SSLMODES_PLAIN_SERVER)[sslmode]
    if problem is None:
        assert probe(target, app.password).tls is tls
        return
    with pytest.raises(InstallerError) as excinfo:
        probe(target, app.password)
    message = refused(excinfo, ErrorCode.DATABASE_TLS, app.password)
    assert problem.format(user=app.user) in message
    assert f"127.0.0.1:{server.port}" in message


def test_without_a_ca_file_require_encrypts_unverified_and_verify_full_uses_the_system_store(
    postgres_tls_server: PostgresServer,
) -> None:
    app = make_app(postgres_tls_server)
    assert probe(app.target(sslmode="require"), app.password).tls
    with pytest.raises(InstallerError) as excinfo:
        probe(app.target(sslmode="verify-full"), app.password)
    message = refused(excinfo, ErrorCode.DATABASE_TLS, app.password)
    assert "does not verify against the system trust store" in message


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_a_certificate_from_another_ca_is_refused(
    postgres_tls_server: PostgresServer, tmp_path: Path, sslmode: str
) -> None:
    wrong = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong))
    app = make_app(postgres_tls_server)
    with pytest.raises(InstallerError) as excinfo:
        probe(app.target(sslmode=sslmode, ca_file=str(wrong)), app.password)
    message = refused(excinfo, ErrorCode.DATABASE_TLS, app.password)
    assert f"does not verify against {wrong}" in message


def test_verify_full_checks_the_name_and_verify_ca_does_not(postgres_tls_server: PostgresServer) -> None:
    """The certificate names 127.0.0.1 and localhost. `127.1` reaches the same server (inet_aton's
    short form) under a name the certificate does not carry."""
    app = make_app(postgres_tls_server)
    ca = str(postgres_tls_server.ca_file)
    full = app.target(sslmode="verify-full", ca_file=ca)
    assert probe(dataclasses.replace(full, host="localhost"), app.password).tls
    with pytest.raises(InstallerError) as excinfo:
        probe(dataclasses.replace(full, host="127.1"), app.password)
    assert "Hostname mismatch" in refused(excinfo, ErrorCode.DATABASE_TLS, app.password)
    assert probe(
        dataclasses.replace(app.target(sslmode="verify-ca", ca_file=ca), host="127.1"), app.password
    ).tls


# -- each failure -------------------------------------------------------------------------------


def test_a_server_that_is_not_there_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    target = DatabaseTarget.parse(f"postgresql://app@127.0.0.1:{port}/tg")
    with pytest.raises(InstallerError) as excinfo:
        probe(target, "s3cret-pw")
    message = refused(excinfo, ErrorCode.DATABASE_UNREACHABLE, "s3cret-pw")
    assert f"cannot reach the PostgreSQL server at 127.0.0.1:{port}: Connection refused" in message
    unknown = DatabaseTarget.parse("postgresql://app@no-such-host.invalid:5432/tg")
    with pytest.raises(InstallerError) as excinfo:
        probe(unknown, "s3cret-pw")
    assert "no-such-host.invalid:5432" in refused(excinfo, ErrorCode.DATABASE_UNREACHABLE, "s3cret-pw")


@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_authentication_failures(postgres_server: PostgresServer, who: str) -> None:
    app = make_app(postgres_server)
    target = app.target()
    if who == "unknown-user":
        target = dataclasses.replace(target, user=unique("nobody"))
        password = app.password
    else:
        password = app.password + "-wrong"
    with pytest.raises(InstallerError) as excinfo:
        probe(target, password)
    message = refused(excinfo, ErrorCode.DATABASE_AUTH_FAILED, password, app.password)
    assert f"127.0.0.1:{postgres_server.port} refused user {target.user}" in message


def test_a_missing_database(postgres_server: PostgresServer) -> None:
    app = make_app(postgres_server)
    target = dataclasses.replace(app.target(), dbname=unique("gone"))
    with pytest.raises(InstallerError) as excinfo:
        probe(target, app.password)
    message = refused(excinfo, ErrorCode.DATABASE_MISSING, app.password)
    assert f"has no database '{target.dbname}'" in message


def test_no_create_privilege_and_no_schema(postgres_server: PostgresServer) -> None:
    app = make_app(postgres_server, owner=False)
    with pytest.raises(InstallerError) as excinfo:
        probe(app.target(), app.password)
    message = refused(excinfo, ErrorCode.DATABASE_PRIVILEGES, app.password)
    assert f"user {app.user} may not create the schema 'testgen'" in message
    # Once someone made the schema for it, and let it in, the app user needs no CREATE.
    app.sql(f'CREATE SCHEMA testgen; GRANT USAGE, CREATE ON SCHEMA testgen TO "{app.user}"')
    facts = probe(app.target(), app.password)
    assert (facts.schema_exists, facts.can_create_schema) == (True, False)


def test_no_usage_on_an_existing_schema(postgres_server: PostgresServer) -> None:
    app = make_app(postgres_server, owner=False)
    app.sql("CREATE SCHEMA testgen")
    with pytest.raises(InstallerError) as excinfo:
        probe(app.target(), app.password)
    assert f"user {app.user} may not use the schema 'testgen'" in refused(
        excinfo, ErrorCode.DATABASE_PRIVILEGES, app.password
    )


def test_no_connect_privilege(postgres_server: PostgresServer) -> None:
    app = make_app(postgres_server, owner=False)
    postgres_server.sql(f'REVOKE CONNECT ON DATABASE "{app.dbname}" FROM PUBLIC')
    with pytest.raises(InstallerError) as excinfo:
        probe(app.target(), app.password)
    assert f"user {app.user} may not connect to database '{app.dbname}'" in refused(
        excinfo, ErrorCode.DATABASE_PRIVILEGES, app.password
    )


def test_an_unsupported_server_version(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(postgres_server)
    major = probe(app.target(), app.password).major
    monkeypatch.setattr(database, "SUPPORTED_MAJORS", range(major + 1, major + 4))
    with pytest.raises(InstallerError) as excinfo:
        probe(app.target(), app.password)
    message = refused(excinfo, ErrorCode.DATABASE_VERSION, app.password)
    assert f"runs version {major}." in message
    assert f"TestGen supports PostgreSQL {major + 1} to {major + 3}" in message


# -- drop_schema and schema_tables --------------------------------------------------------------


@pytest.mark.parametrize("schema", ["testgen", 'Odd "Schema"; DROP TABLE public.keep; --'])
def test_drop_schema_drops_testgens_schema_only(postgres_server: PostgresServer, schema: str) -> None:
    app = make_app(postgres_server)
    target = dataclasses.replace(app.target(), schema=schema)
    quoted = '"' + schema.replace('"', '""') + '"'
    app.sql(
        f'CREATE SCHEMA {quoted} AUTHORIZATION "{app.user}"; '
        f"CREATE TABLE {quoted}.b (id int); CREATE TABLE {quoted}.a (id int); "
        f'CREATE TABLE public.keep (id int); ALTER TABLE public.keep OWNER TO "{app.user}"; '
        f'ALTER TABLE {quoted}.a OWNER TO "{app.user}"; ALTER TABLE {quoted}.b OWNER TO "{app.user}"'
    )
    assert schema_tables(target, app.password) == ["a", "b"]
    drop_schema(target, app.password)
    assert schema_tables(target, app.password) == []
    assert app.sql("SELECT count(*) FROM public.keep") == [[0]]
    assert not app.sql(f"SELECT 1 FROM pg_namespace WHERE nspname = '{schema.replace(chr(39), chr(39) * 2)}'")
    drop_schema(target, app.password)  # nothing there: nothing to do


def test_drop_schema_as_the_admin_user(postgres_server: PostgresServer) -> None:
    admin = make_app(postgres_server)
    user, password = unique("app"), secrets.token_urlsafe(12)
    postgres_server.create_role(user, password)
    admin.sql(
        f'CREATE SCHEMA testgen AUTHORIZATION "{admin.user}"; GRANT USAGE ON SCHEMA testgen TO "{user}"'
    )
    target = DatabaseTarget.parse(postgres_server.url(user, admin.dbname), admin_user=admin.user)
    with pytest.raises(InstallerError) as excinfo:
        drop_schema(dataclasses.replace(target, admin_user=None), password)
    assert "must be owner of schema testgen" in refused(excinfo, ErrorCode.DATABASE_PRIVILEGES, password)
    drop_schema(target, password, admin.password)
    assert not admin.sql("SELECT 1 FROM pg_namespace WHERE nspname = 'testgen'")
