"""TestGen's metadata on the user's own PostgreSQL server (`install --database URL`): the target
parsed from its URL and TestGen's settings, the password read from a file, PGPASSWORD or a prompt,
and a preflight over the wire (pg8000) that fails clearly before anything is written: server
unreachable, authentication failed, TLS required or refused, database missing, not enough
privileges, a server version TestGen does not support. A password never appears in argv, logs or
any message: URLs are shown through config.mask_userinfo, and pg8000's connect arguments are
never formatted (its errors carry the server's fields, which hold names, not passwords)."""

from __future__ import annotations

import contextlib
import os
import ssl
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, unquote, urlsplit

from dk_installer.bootstrap import EXIT_REQUIREMENTS, EXIT_USAGE
from dk_installer.config import mask_userinfo
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.tls import system_trust_context

if TYPE_CHECKING:
    import pg8000.native

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_PORT = 5432
DEFAULT_SCHEMA = "testgen"
# TestGen's dump and restore use the pg_dump and pg_restore that pgserver bundles (PostgreSQL 18),
# which read servers back to 9.2 but write dumps only their own version restores; TestGen's own
# schema needs PostgreSQL 13+ (gen_random_uuid() without pgcrypto). 18 is the newest they know.
SUPPORTED_MAJORS = range(13, 19)
REVISION_TABLE = "tg_revision"  # TestGen's dbsetup: (component, revision), component 'metadata_db'
REVISION_COMPONENT = "metadata_db"
APPLICATION_NAME = "dk-installer"

# libpq's SQLSTATEs at connection time (PostgreSQL "Appendix A. Error Codes").
_AUTH_FAILED = "28P01"  # invalid_password
_NOT_AUTHORIZED = "28000"  # invalid_authorization_specification: pg_hba.conf, unknown role under trust
_NO_DATABASE = "3D000"  # invalid_catalog_name
_NO_PRIVILEGE = "42501"  # insufficient_privilege: no CONNECT on the database


@dataclass(frozen=True)
class DatabaseTarget:
    """Where TestGen keeps its metadata, and how to reach it. Never holds a password."""

    user: str
    host: str
    port: int
    dbname: str
    sslmode: str | None = None  # None: libpq's default, prefer
    ca_file: str | None = None  # a PEM file; None: the system trust store (verify-full)
    admin_user: str | None = None  # for setup, when the app user may not create schemas
    schema: str = DEFAULT_SCHEMA

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        sslmode: str | None = None,
        ca_file: str | None = None,
        admin_user: str | None = None,
    ) -> DatabaseTarget:
        """postgresql://USER@HOST[:PORT]/DBNAME (or postgres://). A password, query parameters or
        a missing part is a usage error whose message shows the URL with its user masked."""
        shown = mask_userinfo(url)

        def refuse(problem: str) -> InstallerError:
            return InstallerError(f"--database {shown}: {problem}", exit_code=EXIT_USAGE)

        parts = urlsplit(url.strip())
        if parts.scheme not in ("postgresql", "postgres"):
            raise refuse("the URL must start with postgresql:// (or postgres://)")
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            raise refuse(
                "the URL must not carry a password (it would show in the process list and in logs); "
                "give it with --database-password-file, PGPASSWORD or at the prompt"
            )
        if parts.query or parts.fragment:
            raise refuse("the URL takes no parameters (?...): give TLS settings with their own options")
        user = unquote(parts.username or "")
        if not user:
            raise refuse("the URL names no user (postgresql://USER@HOST:PORT/DBNAME)")
        host = parts.hostname or ""
        if not host:
            raise refuse("the URL names no host (postgresql://USER@HOST:PORT/DBNAME)")
        if "%" in host:
            raise refuse("the host must be a name or an address (a Unix socket folder is not supported)")
        try:
            port = DEFAULT_PORT if parts.port is None else parts.port
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise refuse("the port must be a number from 1 to 65535")
        dbname = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if not dbname or "/" in dbname:
            raise refuse("the URL names no database (postgresql://USER@HOST:PORT/DBNAME)")
        if sslmode is not None and sslmode not in SSL_MODES:
            raise refuse(f"sslmode {sslmode!r} is not one of {', '.join(SSL_MODES)}")
        if sslmode == "verify-ca" and not ca_file:
            raise refuse(
                "sslmode verify-ca needs the CA file that signed the server's certificate "
                "(the system trust store pairs only with verify-full)"
            )
        if ca_file is not None:
            ca_file = os.path.abspath(os.path.expanduser(ca_file))
            if not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK):
                raise refuse(f"the CA file {ca_file} does not exist or cannot be read")
        return cls(user, host, port, dbname, sslmode, ca_file, admin_user or None)

    @property
    def server(self) -> str:
        """HOST:PORT as messages name the server ([::1]:5432 for an IPv6 address)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self) -> str:
        """postgresql://USER@HOST:PORT/DBNAME: what the installer shows and records, never a password."""
        return f"postgresql://{quote(self.user, safe='')}@{self.server}/{quote(self.dbname, safe='')}"

    def testgen_settings(self, password: str, admin_password: str | None) -> dict[str, str]:
        """The TG_METADATA_DB_* keys of TestGen's config.env. Without an admin password TestGen
        uses the app user's for its admin user."""
        values = {
            "TG_METADATA_DB_HOST": self.host,
            "TG_METADATA_DB_PORT": str(self.port),
            "TG_METADATA_DB_USER": self.user,
            "TG_METADATA_DB_PASSWORD": password,
            "TG_METADATA_DB_NAME": self.dbname,
            "TG_METADATA_DB_SCHEMA": self.schema,
        }
        if self.sslmode:
            values["TG_METADATA_DB_SSLMODE"] = self.sslmode
        if self.ca_file:
            values["TG_METADATA_DB_SSLROOTCERT"] = self.ca_file
        if self.admin_user:
            values["TG_METADATA_DB_ADMIN_USER"] = self.admin_user
            if admin_password is not None:
                values["TG_METADATA_DB_ADMIN_PASSWORD"] = admin_password
        return values

    @classmethod
    def from_testgen_settings(cls, values: Mapping[str, str]) -> DatabaseTarget | None:
        """The target that testgen_settings() wrote, or None when TestGen keeps its own database
        (no TG_METADATA_DB_HOST)."""
        host = values.get("TG_METADATA_DB_HOST")
        if not host:
            return None
        rootcert = values.get("TG_METADATA_DB_SSLROOTCERT")
        return cls(
            user=values.get("TG_METADATA_DB_USER", ""),
            host=host,
            port=int(values.get("TG_METADATA_DB_PORT") or DEFAULT_PORT),
            dbname=values.get("TG_METADATA_DB_NAME", ""),
            sslmode=(values.get("TG_METADATA_DB_SSLMODE") or "").lower() or None,
            ca_file=rootcert if rootcert and rootcert != "system" else None,
            admin_user=values.get("TG_METADATA_DB_ADMIN_USER") or None,
            schema=values.get("TG_METADATA_DB_SCHEMA") or DEFAULT_SCHEMA,
        )


def read_password(
    *, env: Mapping[str, str], password_file: str | None, prompt: str, interactive: bool
) -> str:
    """The database password: from --database-password-file (a regular file that neither group
    nor others may read or write, as libpq asks of .pgpass; one trailing newline dropped), else
    PGPASSWORD, else a hidden prompt on a terminal."""
    if password_file is not None:
        return _password_from_file(password_file)
    if env.get("PGPASSWORD"):
        return env["PGPASSWORD"]
    if interactive:
        import click

        return str(click.prompt(prompt, hide_input=True))
    raise InstallerError(
        "no password for the database: give --database-password-file FILE (mode 0600), "
        "set PGPASSWORD, or run the command in a terminal to be asked",
        exit_code=EXIT_USAGE,
    )


def _password_from_file(path: str) -> str:
    def refuse(problem: str) -> InstallerError:
        return InstallerError(f"--database-password-file {path}: {problem}", exit_code=EXIT_USAGE)

    try:
        # O_NONBLOCK: a FIFO is refused below instead of blocking the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(f"cannot be opened ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise refuse("is not a regular file")
    if info.st_mode & 0o077:
        os.close(fd)
        raise refuse(f"is open to group or others (mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("is not UTF-8 text") from None  # the error's text would quote the bytes
    text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not text:
        raise refuse("is empty")
    return text


@dataclass(frozen=True)
class ServerFacts:
    """What the preflight learned about the server, for the install to decide and report."""

    version: str  # server_version, e.g. "15.14"
    major: int
    tls: bool  # the app user's connection used TLS
    schema_exists: bool
    testgen_revision: str | None  # <schema>.tg_revision's metadata_db row, when readable
    can_create_schema: bool  # CREATE on the database, for the setup user (admin, else app)
    can_create_database: bool  # rolcreatedb or rolsuper of the setup user
    other_objects: bool  # schemas beside TestGen's, or relations in public


def _failure(message: str, code: ErrorCode) -> InstallerError:
    return InstallerError(message, code=code, exit_code=EXIT_REQUIREMENTS)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _tls_context(target: DatabaseTarget) -> ssl.SSLContext:
    """As libpq: verify-full checks the chain and the name (against ca_file, else the system
    trust store); with a ca_file, every other mode that uses TLS checks the chain (libpq does
    so whenever sslrootcert is a file); without one, require/prefer/allow encrypt unverified."""
    if target.sslmode == "verify-full":
        context = (
            ssl.create_default_context(cafile=target.ca_file) if target.ca_file else system_trust_context()
        )
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        return context
    if target.ca_file:
        context = ssl.create_default_context(cafile=target.ca_file)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        return context
    return _unverified_context()


def _attempts(target: DatabaseTarget) -> list[ssl.SSLContext | bool]:
    """The connections to try, in libpq's order: False is plain TCP, a context is TLS."""
    mode = target.sslmode or "prefer"
    if mode == "disable":
        return [False]
    if mode == "allow":
        return [False, _tls_context(target)]
    if mode == "prefer":
        return [_tls_context(target), False]
    return [_tls_context(target)]


def _server_fields(exc: BaseException) -> dict[str, str]:
    """The ErrorResponse fields pg8000 puts in a DatabaseError (C: SQLSTATE, M: message)."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, dict) else {}


def _rejected_by_hba(exc: BaseException) -> bool:
    fields = _server_fields(exc)
    return fields.get("C") == _NOT_AUTHORIZED and "pg_hba.conf" in fields.get("M", "")


def _retry_without_tls(exc: BaseException) -> bool:
    """prefer: libpq retries in plain text when the TLS attempt fails short of authentication."""
    import pg8000.exceptions

    refused = isinstance(exc, pg8000.exceptions.InterfaceError) and "refuses SSL" in str(exc)
    handshake = isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLCertVerificationError)
    return refused or handshake or _rejected_by_hba(exc)


def _os_cause(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    if isinstance(cause, TimeoutError) or "timed out" in str(cause):
        return "no answer (timed out)"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause)


def _connect_failure(exc: Exception, target: DatabaseTarget, user: str, dbname: str, tls: bool) -> Exception:
    """The InstallerError that names the server and the cause of a failed connection; an
    exception this function does not know is returned as is (a bug, reported as unexpected)."""
    import pg8000.exceptions

    where = f"the PostgreSQL server at {target.server}"
    mode = target.sslmode or "prefer"
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = target.ca_file or "the system trust store"
        return _failure(
            f"{where} presented a certificate that does not verify against {trusted} "
            f"(sslmode {mode}): {exc.verify_message}",
            ErrorCode.DATABASE_TLS,
        )
    if isinstance(exc, ssl.SSLError):
        return _failure(
            f"TLS with {where} failed (sslmode {mode}): {exc.reason or exc}", ErrorCode.DATABASE_TLS
        )
    if isinstance(exc, pg8000.exceptions.DatabaseError):
        fields = _server_fields(exc)
        sqlstate, said = fields.get("C", ""), fields.get("M", "")
        if sqlstate == _AUTH_FAILED:
            return _failure(
                f"{where} refused user {user}: {said} (a wrong password, or no such user)",
                ErrorCode.DATABASE_AUTH_FAILED,
            )
        if _rejected_by_hba(exc) and not tls and mode == "disable":
            # prefer ends in plain text only after the server refused TLS: then pg_hba.conf
            # simply has no entry for the user, which the next branch reports.
            return _failure(
                f"{where} lets user {user} in only over TLS ({said}); "
                "sslmode disable connects without it: use require or a verify mode",
                ErrorCode.DATABASE_TLS,
            )
        if sqlstate == _NOT_AUTHORIZED:
            return _failure(f"{where} refused user {user}: {said}", ErrorCode.DATABASE_AUTH_FAILED)
        if sqlstate == _NO_DATABASE:
            return _failure(
                f"{where} has no database {dbname!r}; create it (CREATE DATABASE) or name another",
                ErrorCode.DATABASE_MISSING,
            )
        if sqlstate == _NO_PRIVILEGE:
            return _failure(
                f"user {user} may not connect to database {dbname!r} on {target.server}: {said} "
                f"(GRANT CONNECT ON DATABASE)",
                ErrorCode.DATABASE_PRIVILEGES,
            )
        return _failure(
            f"{where} refused the connection: {said} (SQLSTATE {sqlstate})", ErrorCode.DATABASE_UNREACHABLE
        )
    if isinstance(exc, pg8000.exceptions.InterfaceError) and "refuses SSL" in str(exc):
        return _failure(
            f"{where} does not offer TLS, which sslmode {mode} needs "
            "(turn ssl on in the server, or choose prefer or disable)",
            ErrorCode.DATABASE_TLS,
        )
    if isinstance(exc, (pg8000.exceptions.InterfaceError, OSError)):
        return _failure(f"cannot reach {where}: {_os_cause(exc)}", ErrorCode.DATABASE_UNREACHABLE)
    return exc


def _raise_connect_failure(
    exc: Exception, target: DatabaseTarget, user: str, dbname: str, tls: bool
) -> NoReturn:
    failure = _connect_failure(exc, target, user, dbname, tls)
    if failure is exc:
        raise exc
    raise failure from None


def connect(
    target: DatabaseTarget,
    password: str,
    *,
    user: str | None = None,
    database: str | None = None,
    timeout: float = 10.0,
) -> pg8000.native.Connection:
    """A connection as `user` (the target's app user by default) to `database` (the target's),
    negotiating TLS as libpq does for the target's sslmode. A failure is an InstallerError (exit
    3) that names the server and the cause."""
    import pg8000.native

    login = user or target.user
    dbname = database or target.dbname

    def attempt(context: ssl.SSLContext | bool) -> pg8000.native.Connection:
        return pg8000.native.Connection(
            user=login,
            host=target.host,
            port=target.port,
            database=dbname,
            password=password,
            ssl_context=context,
            timeout=timeout,
            application_name=APPLICATION_NAME,
        )

    *first, last = _attempts(target)
    for context in first:
        tls = context is not False
        try:
            return attempt(context)
        except Exception as exc:
            if not (_retry_without_tls(exc) if tls else _rejected_by_hba(exc)):
                _raise_connect_failure(exc, target, login, dbname, tls)
    try:
        return attempt(last)
    except Exception as exc:
        _raise_connect_failure(exc, target, login, dbname, last is not False)


@contextlib.contextmanager
def _session(target: DatabaseTarget, password: str, user: str | None = None) -> Iterator[Any]:
    """connect(), closed on leaving; a lost connection or a missing privilege on the way is an
    InstallerError like connect()'s."""
    import pg8000.exceptions

    connection = connect(target, password, user=user)
    try:
        yield connection
    except pg8000.exceptions.DatabaseError as exc:
        fields = _server_fields(exc)
        if fields.get("C") != _NO_PRIVILEGE:
            raise
        raise _failure(
            f"user {user or target.user} lacks a privilege in database {target.dbname!r} on "
            f"{target.server}: {fields.get('M', '')}",
            ErrorCode.DATABASE_PRIVILEGES,
        ) from None
    except (pg8000.exceptions.InterfaceError, OSError) as exc:
        raise _failure(
            f"lost the connection to the PostgreSQL server at {target.server}: {_os_cause(exc)}",
            ErrorCode.DATABASE_UNREACHABLE,
        ) from None
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def _quoted(name: str) -> str:
    import pg8000.native

    return str(pg8000.native.identifier(name))


def _setup_facts(connection: Any, schema: str) -> tuple[bool, bool, str | None]:
    """CREATE on the database, CREATEDB (or superuser), and TestGen's revision when readable."""
    [[can_create_schema, can_create_database]] = connection.run(
        "SELECT has_database_privilege(current_database(), 'CREATE'), "
        "(SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)"
    )
    revision = None
    [[readable]] = connection.run(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace AS n JOIN pg_class AS c ON c.relnamespace = n.oid"
        " WHERE n.nspname = :s AND c.relname = :t"
        " AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'))",
        s=schema,
        t=REVISION_TABLE,
    )
    if readable:
        rows = connection.run(
            f"SELECT revision FROM {_quoted(schema)}.{_quoted(REVISION_TABLE)} WHERE component = :c",
            c=REVISION_COMPONENT,
        )
        revision = str(rows[0][0]) if rows and rows[0][0] is not None else None
    return bool(can_create_schema), bool(can_create_database), revision


def server_identity(connection: Any) -> tuple[str, int, bool]:
    """The server's version ("15.14"), its major version, and whether `connection` uses TLS."""
    [[version_text, version_num, tls]] = connection.run(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
        "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)"
    )
    return str(version_text).split()[0], int(version_num) // 10000, bool(tls)


def probe(target: DatabaseTarget, password: str, admin_password: str | None = None) -> ServerFacts:
    """Connect as the app user (and as the admin user when there is one) and learn what the
    install needs, refusing a server version TestGen does not support and a setup that cannot
    create TestGen's schema. Reads only; writes nothing."""
    with _session(target, password) as app:
        version, major, tls = server_identity(app)
        if major not in SUPPORTED_MAJORS:
            supported = f"{SUPPORTED_MAJORS[0]} to {SUPPORTED_MAJORS[-1]}"
            raise _failure(
                f"the PostgreSQL server at {target.server} runs version {version}; "
                f"TestGen supports PostgreSQL {supported}",
                ErrorCode.DATABASE_VERSION,
            )
        usage = app.run(
            "SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = :s", s=target.schema
        )
        schema_exists = bool(usage)
        [[other_objects]] = app.run(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace"
            " WHERE nspname NOT IN ('public', 'information_schema', :s) AND nspname NOT LIKE 'pg\\_%')"
            " OR EXISTS (SELECT 1 FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public')",
            s=target.schema,
        )
        if target.admin_user:
            with _session(target, admin_password or password, user=target.admin_user) as admin:
                can_create_schema, can_create_database, revision = _setup_facts(admin, target.schema)
        else:
            can_create_schema, can_create_database, revision = _setup_facts(app, target.schema)
    setup_user = target.admin_user or target.user
    if not schema_exists and not can_create_schema:
        raise _failure(
            f"user {setup_user} may not create the schema {target.schema!r} in database {target.dbname!r} "
            f"on {target.server}, and it does not exist yet: GRANT CREATE ON DATABASE to that user, "
            "create the schema for it, or give an admin user that may (--database-admin-user)",
            ErrorCode.DATABASE_PRIVILEGES,
        )
    if schema_exists and not usage[0][0] and not target.admin_user:
        raise _failure(
            f"user {target.user} may not use the schema {target.schema!r} in database {target.dbname!r} "
            f"on {target.server}: GRANT USAGE ON SCHEMA to that user, or give an admin user that may",
            ErrorCode.DATABASE_PRIVILEGES,
        )
    return ServerFacts(
        version=version,
        major=major,
        tls=bool(tls),
        schema_exists=schema_exists,
        testgen_revision=revision,
        can_create_schema=can_create_schema,
        can_create_database=can_create_database,
        other_objects=bool(other_objects),
    )


def drop_schema(target: DatabaseTarget, password: str, admin_password: str | None = None) -> None:
    """DROP SCHEMA <schema> CASCADE as the setup user (admin, else app): TestGen's metadata and
    nothing else in the database. Dropping a schema that is not there does nothing."""
    user = target.admin_user or target.user
    secret = (admin_password or password) if target.admin_user else password
    with _session(target, secret, user=user) as connection:
        connection.run(f"DROP SCHEMA IF EXISTS {_quoted(target.schema)} CASCADE")


def schema_tables(target: DatabaseTarget, password: str) -> list[str]:
    """The tables in TestGen's schema, by name."""
    with _session(target, password) as connection:
        rows = connection.run(
            "SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY tablename", s=target.schema
        )
    return [str(name) for [name] in rows]
