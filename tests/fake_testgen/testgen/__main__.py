"""The stand-in `testgen` command. See testgen/__init__.py. Every command starts a Python, like the
real one: modules only some commands need are imported where they are used."""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

HOME = Path(os.environ.get("TG_TESTGEN_HOME", Path.home() / ".testgen"))
CONFIG = HOME / "config.env"
PGDATA = HOME / "pgdata"
POSTGRES_SCRIPT = "fake_postgres.py"  # run as a script: it starts in milliseconds
USERS = PGDATA / "users.json"  # like TestGen's auth_users table: salted hashes, changeable later


def version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def password_hash(password: str, salt: str) -> str:
    return hashlib.sha256((salt + password).encode()).hexdigest()


def on_server() -> bool:
    """Outside standalone mode TestGen keeps its data on the PostgreSQL server config.env names."""
    return setting("TG_STANDALONE_MODE", "no").lower() not in ("yes", "true", "1")


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def psql(sql: str, *, database: str | None = None, admin: bool = False, check: bool = True) -> str:
    """One statement on the server, as TestGen's SQLAlchemy engine would run it (the admin user for
    setup), through the machine's real psql: a wrong password, a missing database or a server that
    insists on TLS fail here the way they fail TestGen, with PostgreSQL's own message and exit 1."""
    from testgen._pgbin import PG_BIN

    user = setting("TG_METADATA_DB_USER", "")
    password = setting("TG_METADATA_DB_PASSWORD", "")
    if admin:
        user, password = (
            setting("TG_METADATA_DB_ADMIN_USER", user),
            setting("TG_METADATA_DB_ADMIN_PASSWORD", password),
        )
    parts = {
        "host": setting("TG_METADATA_DB_HOST", "localhost"),
        "port": setting("TG_METADATA_DB_PORT", "5432"),
        "user": user,
        "dbname": database or setting("TG_METADATA_DB_NAME", "datakitchen"),
        "sslmode": setting("TG_METADATA_DB_SSLMODE", ""),
    }
    root = setting("TG_METADATA_DB_SSLROOTCERT", "system")
    if parts["sslmode"] and root != "system":
        parts["sslrootcert"] = root
    conninfo = " ".join(f"{key}={sql_text(value)}" for key, value in parts.items() if value)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    result = subprocess.run(
        [f"{PG_BIN}/psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
        env={**env, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        print(
            f"sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) {result.stderr.strip()}",
            file=sys.stderr,
        )
        sys.exit(1)
    return result.stdout.strip()


def schema() -> str:
    return setting("TG_METADATA_DB_SCHEMA", "testgen")


def set_password(username: str, password: str) -> None:
    salt = secrets.token_hex(8)
    if on_server():
        psql(
            f"INSERT INTO {schema()}.auth_users VALUES ({sql_text(username)}, {sql_text(salt)}, "
            f"{sql_text(password_hash(password, salt))}) ON CONFLICT (username) DO UPDATE SET salt = "
            "EXCLUDED.salt, hash = EXCLUDED.hash"
        )
        return
    users = json.loads(USERS.read_text()) if USERS.exists() else {}
    users[username] = {"salt": salt, "hash": password_hash(password, salt)}
    USERS.write_text(json.dumps(users))


def password_ok(username: str, password: str) -> bool:
    if on_server():
        row = psql(f"SELECT salt, hash FROM {schema()}.auth_users WHERE username = {sql_text(username)}")
        user = dict(zip(("salt", "hash"), row.split("|"))) if row else None
    else:
        users = json.loads(USERS.read_text()) if USERS.exists() else {}
        user = users.get(username)
    return bool(user) and password_hash(password, user["salt"]) == user["hash"]


def schema_statements(name: str) -> list[str]:
    """TestGen's schema, as far as the stand-in has one (setup makes it; its pg_dump writes it)."""
    return [
        f"CREATE SCHEMA IF NOT EXISTS {name}",
        f"CREATE TABLE {name}.auth_users (username text PRIMARY KEY, salt text NOT NULL, hash text NOT NULL)",
        f"CREATE TABLE {name}.tg_revision (component text PRIMARY KEY, revision text NOT NULL)",
        f"CREATE TABLE {name}.connections (connection_id integer PRIMARY KEY, project_host varchar(250), "
        "project_port varchar(5), project_user varchar(256), project_db text, project_pw_encrypted bytea)",
    ]


def setup_system_db() -> int:
    """Outside standalone mode: CREATE DATABASE from the `postgres` database (an error there is
    ignored, as TestGen ignores it), then TestGen's schema, its admin user and its revision, as the
    admin user; the app user gets rights on them when it is another role."""
    fault("setup-system-db")
    psql(
        f"CREATE DATABASE {setting('TG_METADATA_DB_NAME', 'datakitchen')}",
        database="postgres",
        admin=True,
        check=False,
    )
    name = schema()
    statements = [
        *schema_statements(name),
        f"INSERT INTO {name}.tg_revision VALUES ('metadata_db', {sql_text(version('dataops-testgen'))})",
    ]
    app_user, admin_user = setting("TG_METADATA_DB_USER", ""), setting("TG_METADATA_DB_ADMIN_USER", "")
    if admin_user and admin_user != app_user:
        statements += [
            f'GRANT USAGE ON SCHEMA {name} TO "{app_user}"',
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {name} TO "{app_user}"',
        ]
    psql(";\n".join(statements), admin=True)
    salt = secrets.token_hex(8)
    user = setting("TESTGEN_USERNAME", "admin")
    psql(
        f"INSERT INTO {name}.auth_users VALUES ({sql_text(user)}, {sql_text(salt)}, "
        f"{sql_text(password_hash(setting('TESTGEN_PASSWORD', ''), salt))})"
    )
    print("setup-system-db has successfully finished.")
    return 0


def record(name: str, line: str) -> None:
    """Evidence for the tests: what each command saw."""
    HOME.mkdir(parents=True, exist_ok=True)
    with open(HOME / f"fake-{name}.log", "a") as handle:
        handle.write(line + "\n")


def setting(name: str, default: str) -> str:
    """Like TestGen's settings: the environment first, then config.env."""
    if name in os.environ:
        return os.environ[name]
    return read_config().get(name, default) if CONFIG.exists() else default


def send_event(name: str, username: str) -> None:
    """TestGen's analytics: one Mixpanel event, form-encoded `data=` (base64 JSON array) to
    $TG_MIXPANEL_URL/track?ip=1, with an instance_id from TG_INSTANCE_ID, else from the MAC address,
    kept in the database on first use. Unlike the real one, it never contacts the default
    api.mixpanel.com: tests send only to 127.0.0.1, so without TG_MIXPANEL_URL it records and stops."""
    if setting("TG_ANALYTICS", "yes").lower() not in ("yes", "true"):
        return
    stored = (HOME if on_server() else PGDATA) / "instance_id"
    if stored.exists():
        instance_id = stored.read_text().strip()
    else:
        import uuid

        instance_id = (
            os.environ.get("TG_INSTANCE_ID")
            or hashlib.blake2b(uuid.getnode().to_bytes(8), digest_size=8).hexdigest()
        )
        stored.write_text(instance_id)
    event = {
        "event": name,
        "properties": {"token": "testgen-project-token", "instance_id": instance_id, "username": username},
    }
    url = setting("TG_MIXPANEL_URL", "")
    record("analytics", f"event {name} instance_id={instance_id} to={url or 'api.mixpanel.com (not sent)'}")
    if not url:
        return
    import urllib.parse
    import urllib.request

    data = urllib.parse.urlencode({"data": base64.b64encode(json.dumps([event]).encode()).decode()})
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"{url}/track?ip=1", data=data.encode(), timeout=3).close()


def fault(command: str) -> None:
    if os.environ.get("FAKE_TESTGEN_FAIL") == command:
        print(f"fake failure in {command}: something broke", file=sys.stderr)
        sys.exit(1)
    if os.environ.get("FAKE_TESTGEN_HANG") == command:
        print(f"{command}: working", flush=True)
        marker = os.environ.get("FAKE_TESTGEN_HANG_MARKER")
        if marker:
            Path(marker).write_text(str(os.getpid()))
        while True:
            time.sleep(1)


def read_config() -> dict[str, str]:
    values = {}
    for line in CONFIG.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def hidden_prompt(text: str) -> str:
    """click's hide_input prompt: getpass, which reads a line from a stdin that is no terminal and,
    without a controlling terminal (the installer starts it in its own session), warns on stderr
    ("GetPassWarning: Can not control echo on the terminal.", "Warning: Password input may be
    echoed.") as the real one does."""
    import getpass

    return getpass.getpass(f"{text}: ")


def setup() -> int:
    """Like the real one: click prompts (the password hidden, asked twice), "Overwrite?" when
    config.env exists (a "no" prints Aborted. and exits 0), config.env, then the embedded
    PostgreSQL starts and the database is initialised (where FAKE_TESTGEN_HANG/FAIL act)."""
    username = input("Admin username [admin]: ").strip() or "admin"
    password = hidden_prompt("Admin password")
    confirmation = hidden_prompt("Repeat for confirmation")
    if password != confirmation:
        print("Error: The two entered values do not match.", file=sys.stderr)
        return 1
    if CONFIG.exists():
        answer = input(f"Config already exists at {CONFIG}. Overwrite? [y/N]: ")
        if answer.lower() != "y":
            print("Aborted.")
            return 0
    lines = [
        "TG_STANDALONE_MODE=yes",
        f"TESTGEN_USERNAME={username}",
        f"TESTGEN_PASSWORD={password}",
        f"TG_DECRYPT_SALT={secrets.token_hex(6)}",
        f"TG_DECRYPT_PASSWORD={secrets.token_hex(6)}",
        f"TG_JWT_HASHING_KEY={base64.b64encode(secrets.token_bytes(32)).decode()}",
        "TG_ANALYTICS=yes",
        "# Runtime overrides from installer",
    ]
    lines += [f"{k}={os.environ[k]}" for k in ("TG_UI_PORT", "TG_API_PORT") if os.environ.get(k)]
    HOME.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text("\n".join(lines) + "\n")
    PGDATA.mkdir(exist_ok=True)
    (PGDATA / "PG_VERSION").write_text("16\n")
    # initdb writes tens of MB; on a full disk PostgreSQL's error ends the setup.
    initdb_bytes = int(os.environ.get("FAKE_TESTGEN_INITDB_MB", "0")) * 1024 * 1024
    if initdb_bytes:
        try:
            with open(PGDATA / "base.dat", "wb") as data:
                for _ in range(initdb_bytes // 65536):
                    data.write(b"\0" * 65536)
        except OSError as exc:
            print(
                f'initdb: error: could not write file "{PGDATA / "base.dat"}": {exc.strerror}',
                file=sys.stderr,
            )
            print("UserWarning: the database was not initialized", file=sys.stderr)
            return 1
    start_postgres()
    print("Initializing database...", flush=True)
    fault("standalone-setup")
    set_password(username, password)
    send_event("standalone_setup", username)
    print("TestGen is ready!")
    return 0


def quick_start() -> int:
    fault("quick-start")
    if on_server():
        # Like TestGen outside standalone mode: the demo database on the same server (CREATE
        # DATABASE, an error ignored), then `setup-system-db --delete-db`: TestGen's own database
        # is DROPPED and made again, whatever else it held.
        demo = setting("PROJECT_DATABASE_NAME", "demo_db")
        psql(f"CREATE DATABASE {demo}", database="postgres", admin=True, check=False)
        app_db = setting("TG_METADATA_DB_NAME", "datakitchen")
        psql(f"DROP DATABASE IF EXISTS {app_db} WITH (FORCE)", database="postgres", admin=True)
        setup_system_db()
        psql(
            "CREATE SCHEMA demo; CREATE TABLE demo.customers (id integer PRIMARY KEY); "
            "INSERT INTO demo.customers VALUES (1), (2), (3)",
            database=demo,
        )
        from testgen.common.encrypt import EncryptText

        secret = EncryptText(setting("TG_METADATA_DB_PASSWORD", ""))
        psql(
            f"INSERT INTO {schema()}.connections VALUES (1, "
            + ", ".join(
                sql_text(setting(name, ""))
                for name in ("TG_METADATA_DB_HOST", "TG_METADATA_DB_PORT", "TG_METADATA_DB_USER")
            )
            + f", {sql_text(demo)}, convert_to({sql_text(secret)}, 'UTF8'))"
        )
    (HOME / "demo-loaded").write_text("yes\n")
    print("Quick start has successfully finished.")
    return 0


def run_profile() -> int:
    """Profiling of the demo's table group: a query on the demo connection's database. Outside
    standalone mode a host of <embedded> means nothing (TestGen resolves it only in standalone
    mode), and a password encrypted with other keys cannot be read."""
    if not on_server():
        print("Profiling run completed (embedded).")
        return 0
    from testgen.common.encrypt import DecryptText

    row = psql(
        "SELECT project_host, project_port, project_user, project_db, "
        f"convert_from(project_pw_encrypted, 'UTF8') FROM {schema()}.connections WHERE connection_id = 1"
    )
    if not row:
        print("Error: the demo's connection is missing", file=sys.stderr)
        return 1
    host, port, user, database, secret = row.split("|")
    if host == "<embedded>":
        print(
            f'psycopg2.OperationalError: could not translate host name "{host}" to address', file=sys.stderr
        )
        return 1
    os.environ.update(
        TG_METADATA_DB_HOST=host,
        TG_METADATA_DB_PORT=port,
        TG_METADATA_DB_USER=user,
        TG_METADATA_DB_PASSWORD=DecryptText(secret),
    )
    count = psql("SELECT count(*) FROM demo.customers", database=database)
    print(f"Profiling run completed: {count} rows in demo.customers.")
    return 0


def upgrade_system_version() -> int:
    if os.environ.get("FAKE_TESTGEN_FAIL") == "upgrade-system-version":
        # A real failing migration has already changed data: a rollback must put it back.
        if on_server():
            psql(f"CREATE TABLE {schema()}.half_upgraded (id integer)")
        else:
            (PGDATA / "half-upgraded").write_text(version("dataops-testgen") + "\n")
    fault("upgrade-system-version")
    if on_server():
        psql(f"UPDATE {schema()}.tg_revision SET revision = {sql_text(version('dataops-testgen'))}")
    (HOME / "schema-version").write_text(version("dataops-testgen") + "\n")
    print("System and services upgrade is not required.")
    return 0


def handles() -> list[int]:
    path = PGDATA / ".handle_pids.json"
    return json.loads(path.read_text()) if path.exists() else []


def postmaster_alive() -> bool:
    try:
        os.kill(int((PGDATA / "postmaster.pid").read_text().split()[0]), 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def refuse_to_start_postgres(why: list[str]) -> None:
    """pgserver when pg_ctl fails: its logger (TestGen's, on stdout) shows PostgreSQL's log, and
    the command ends with exit code 1; stderr holds nothing but what came before (getpass)."""
    print("Failed to start server.", flush=True)
    print(f"Showing contents of postgres server log ({PGDATA / 'log'}) below:", flush=True)
    for line in why:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} UTC [{os.getpid()}] {line}", flush=True)
    sys.exit(1)


def start_postgres() -> None:
    """pgserver's get_server: start PostgreSQL (a daemon in its own session, which outlives a
    killed caller) unless it runs, and add this process to the handles in .handle_pids.json; at
    exit the handle goes, and the last one stops PostgreSQL. A pid left by a killed process is
    never pruned, so PostgreSQL then stays up (as with the real pgserver). Like the real one, it
    refuses data in a folder that others can write (what `umask 000` made of TestGen's home) and
    a data path with a space; FAKE_TESTGEN_FAIL=postgres makes it refuse to start for another reason."""
    if not postmaster_alive():
        for folder in (PGDATA, HOME):
            if folder.stat().st_mode & 0o022:
                refuse_to_start_postgres(
                    [
                        f'FATAL:  data directory "{PGDATA}" has invalid permissions',
                        f"DETAIL:  {folder} can be written by other users.",
                    ]
                )
        if " " in str(PGDATA):  # pgserver passes `-k <socket dir>` (PGDATA) to postgres unquoted
            stray = str(PGDATA).split(" ", 1)[1]
            refuse_to_start_postgres([f'postgres: invalid argument: "{stray}"'])
        if os.environ.get("FAKE_TESTGEN_FAIL") == "postgres":
            refuse_to_start_postgres(['FATAL:  could not create lock file "postmaster.pid": No space left'])
        subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__).with_name(POSTGRES_SCRIPT)), "-D", str(PGDATA)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not postmaster_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    (PGDATA / ".handle_pids.json").write_text(json.dumps([*handles(), os.getpid()]))
    atexit.register(release_postgres)


def release_postgres() -> None:
    remaining = [pid for pid in handles() if pid != os.getpid()]
    (PGDATA / ".handle_pids.json").write_text(json.dumps(remaining))
    if not remaining and postmaster_alive():
        pid = int((PGDATA / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 10
        while postmaster_alive() and time.monotonic() < deadline:
            time.sleep(0.05)


def jwt_key_is_base64() -> bool:
    import binascii

    try:
        base64.b64decode(setting("TG_JWT_HASHING_KEY", "").encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return True


def run_app() -> int:
    from testgen.web import run_app as serve  # http.server and ssl: only the app needs them

    return serve()


def main() -> int:
    args = sys.argv[1:]
    record("argv", json.dumps(args))
    if not args or args[0] in ("--help", "-h"):
        print("Usage: testgen [OPTIONS] COMMAND [ARGS]...")
        return 0
    command = args[0]
    if command == "fake-set-password":  # what a user does in TestGen's UI: the tests' way to do it
        set_password(args[1], sys.stdin.readline().rstrip("\n"))
        return 0
    record("analytics", f"{command} TG_ANALYTICS env={os.environ.get('TG_ANALYTICS')}")
    commands = {
        "standalone-setup": setup,
        "quick-start": quick_start,
        "run-app": run_app,
        "upgrade-system-version": upgrade_system_version,
        "setup-system-db": setup_system_db,
        "run-profile": run_profile,
    }
    if command not in commands:
        print(f"Error: No such command '{command}'.", file=sys.stderr)
        return 2
    if command != "standalone-setup" and CONFIG.exists() and read_config().get("TG_STANDALONE_MODE") == "yes":
        start_postgres()  # every command in standalone mode, as TestGen's CLI group does
    return commands[command]()


if __name__ == "__main__":
    sys.exit(main())
