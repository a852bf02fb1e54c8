"""TestGen's data on a real PostgreSQL server (steps/database.py, actions/database.py): install
--database, its preflight refusals, the demo rules, status, backup and restore, upgrade's rollback,
uninstall, and migrate-database from an embedded install, with its rollback and kills."""

from __future__ import annotations

import json
import secrets
import signal
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Sandbox, free_port, wait_for_line
from pg_server import PostgresServer


@dataclass
class Account:
    """A role and a database of its own on the test server (unique names: servers are shared)."""

    server: PostgresServer
    role: str
    password: str
    database: str

    @property
    def url(self) -> str:
        return self.server.url(self.role, self.database)

    @property
    def env(self) -> dict[str, str | None]:
        return {"PGPASSWORD": self.password}

    def tables(self, schema: str = "testgen") -> list[str]:
        rows = self.server.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :schema ORDER BY 1",
            database=self.database,
            schema=schema,
        )
        return [row[0] for row in rows]

    def databases(self) -> set[str]:
        return {row[0] for row in self.server.sql("SELECT datname FROM pg_database")}

    def sql(self, statement: str) -> list[list]:
        return self.server.sql(statement, database=self.database)


def account(server: PostgresServer, *, createdb: bool = True, own_database: bool = True) -> Account:
    name = secrets.token_hex(4)
    role, database, password = f"tg_{name}", f"db_{name}", secrets.token_urlsafe(14)
    server.create_role(role, password, createdb=createdb)
    server.create_database(database, role if own_database else "postgres")
    return Account(server, role, password, database)


@pytest.fixture
def server_account(postgres_server: PostgresServer) -> Account:
    return account(postgres_server)


def install_on(sandbox: Sandbox, target: Account, *extra: str) -> str:
    done = sandbox.install("--version", "5.0.0", "--database", target.url, *extra, env=target.env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert target.password not in output
    return output


def test_install_on_a_server_sets_testgen_up_there(sandbox: Sandbox, server_account: Account) -> None:
    output = install_on(sandbox, server_account)
    assert "'admin' logged in" in output
    assert server_account.tables() == ["auth_users", "connections", "tg_revision"]
    config = sandbox.home / "testgen/home/config.env"
    assert config.stat().st_mode & 0o777 == 0o600
    settings = config.read_text()
    assert "TG_STANDALONE_MODE" not in settings
    assert f"TG_METADATA_DB_NAME={server_account.database}" in settings
    assert not (sandbox.home / "testgen/home/pgdata").exists(), "no embedded PostgreSQL"
    # The demo went to a database of its own, named after TestGen's.
    assert f"{server_account.database}_demo" in server_account.databases()
    state = sandbox.state()
    assert state["database"] == server_account.url and state["demo_data"] is True
    status = sandbox.status()
    assert status["database"]["answers"] and status["database"]["version"].startswith("1")
    assert status["database"]["tls"] is False
    # The password reached TestGen through config.env alone: never in any argv, log or support zip.
    argv = (sandbox.home / "testgen/home/fake-argv.log").read_text()
    logs = "".join(path.read_text(errors="replace") for path in (sandbox.home / "logs").rglob("*.log"))
    assert server_account.password not in argv + logs
    zipped = sandbox.run("logs", "--output", str(sandbox.root / "support.zip"))
    assert zipped.returncode == 0
    assert server_account.password.encode() not in (sandbox.root / "support.zip").read_bytes()


def test_install_over_tls_with_the_servers_ca(sandbox: Sandbox, postgres_tls_server: PostgresServer) -> None:
    target = account(postgres_tls_server)
    ca = str(postgres_tls_server.ca_file)
    install_on(sandbox, target, "--no-demo", "--database-sslmode", "verify-full", "--database-ca-file", ca)
    assert sandbox.status()["database"]["tls"] is True
    assert "TG_METADATA_DB_SSLMODE=verify-full" in (sandbox.home / "testgen/home/config.env").read_text()


def refused(sandbox: Sandbox, url: str, env: dict[str, str | None], *extra: str) -> str:
    done = sandbox.install("--no-demo", "--database", url, *extra, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert not (sandbox.home / "testgen").exists(), "nothing of TestGen's is written before the check"
    assert not (sandbox.home / "state.json").exists()
    return output


@pytest.mark.parametrize(
    "problem", ["wrong password", "unreachable", "no database", "tls required", "in use"]
)
def test_preflight_refuses_a_server_before_anything_is_written(
    sandbox: Sandbox, postgres_server: PostgresServer, postgres_tls_server: PostgresServer, problem: str
) -> None:
    target = account(postgres_server)
    url, env, extra = target.url, target.env, []
    if problem == "wrong password":
        env = {"PGPASSWORD": "not-" + target.password}
    elif problem == "unreachable":
        url = f"postgresql://{target.role}@127.0.0.1:{free_port()}/{target.database}"
    elif problem == "no database":
        url = postgres_server.url(target.role, "nothing_here")
    elif problem == "tls required":
        target = account(postgres_tls_server)
        url, env, extra = target.url, target.env, ["--database-sslmode", "disable"]
    else:
        target.sql(f"CREATE SCHEMA testgen AUTHORIZATION {target.role}")
    output = refused(sandbox, url, env, *extra)
    expected = {
        "wrong password": "password",
        "unreachable": "127.0.0.1",
        "no database": "nothing_here",
        "tls required": "TLS",
        "in use": "--database-keys-file",
    }[problem]
    assert expected in output
    assert target.password not in output


def test_a_password_in_the_url_is_a_usage_error_that_never_echoes_it(sandbox: Sandbox) -> None:
    done = sandbox.install("--database", "postgresql://tg:s3cret-value@127.0.0.1:5432/db")
    assert done.returncode == 2
    assert "s3cret-value" not in done.stdout + done.stderr


def test_the_demo_is_skipped_on_a_database_that_holds_other_data(
    sandbox: Sandbox, server_account: Account
) -> None:
    server_account.sql("CREATE TABLE public.orders (id integer)")
    output = install_on(sandbox, server_account)
    assert "holds other data" in output
    assert server_account.tables("public") == ["orders"], "the user's table is untouched"
    assert sandbox.state()["demo_data"] is False


def test_the_demo_is_skipped_without_create_database(
    sandbox: Sandbox, postgres_server: PostgresServer
) -> None:
    target = account(postgres_server, createdb=False)
    output = install_on(sandbox, target)
    assert "CREATE DATABASE" in output
    assert f"{target.database}_demo" not in target.databases()


def test_a_failed_setup_drops_only_the_schema_it_made(sandbox: Sandbox, server_account: Account) -> None:
    server_account.sql("CREATE TABLE public.orders (id integer)")
    done = sandbox.install(
        "--no-demo",
        "--database",
        server_account.url,
        env={**server_account.env, "FAKE_TESTGEN_CRASH_ON_START": "1"},
    )
    assert done.returncode == 1
    assert server_account.tables() == []
    assert server_account.tables("public") == ["orders"]
    assert not (sandbox.home / "testgen/home").exists()


def test_uninstall_leaves_the_server_and_drop_schema_drops_only_the_schema(
    sandbox: Sandbox, server_account: Account
) -> None:
    install_on(sandbox, server_account, "--no-demo")
    server_account.sql("CREATE TABLE public.orders (id integer)")
    done = sandbox.run("uninstall", "--yes", "--keep-data")
    assert done.returncode == 0 and "left as it is" in done.stdout
    assert server_account.tables()
    output = install_on(sandbox, server_account, "--no-demo")  # the kept settings name this server: used
    assert "kept the existing TestGen data" in output
    assert sandbox.state()["database"] == server_account.url
    done = sandbox.run("uninstall", "--yes", "--drop-schema")
    assert done.returncode == 0, done.stdout + done.stderr
    assert server_account.tables() == []
    assert server_account.tables("public") == ["orders"]


def test_reinstall_onto_the_schema_with_its_keys_keeps_the_data(
    sandbox: Sandbox, server_account: Account
) -> None:
    install_on(sandbox, server_account, "--no-demo")
    keys = sandbox.root / "kept.env"
    keys.write_text((sandbox.home / "testgen/home/config.env").read_text())
    password = (sandbox.home / "credentials.txt").read_text()
    assert sandbox.run("uninstall", "--yes").returncode == 0
    output = install_on(sandbox, server_account, "--no-demo", "--database-keys-file", str(keys))
    assert "upgrading the existing schema" in output or "Set up TestGen on the PostgreSQL server" in output
    users = server_account.sql("SELECT count(*) FROM testgen.auth_users")
    assert users == [[1]]
    assert password  # the old credentials file went with the uninstall; the new install made its own


def test_backup_and_restore_on_a_server(sandbox: Sandbox, server_account: Account) -> None:
    install_on(sandbox, server_account, "--no-demo")
    archive = sandbox.root / "server.tar.gz"
    done = sandbox.run("backup", "--output", str(archive))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sandbox.status()["running"], "TestGen keeps running during a server backup"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["data"] == "server" and "schema.dump" in names
    assert not any(name.startswith("home/pgdata") for name in names)
    server_account.sql("DELETE FROM testgen.auth_users")
    server_account.sql("CREATE TABLE testgen.stray (id integer)")
    done = sandbox.run("restore", str(archive), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'admin' logged in" in done.stdout
    assert server_account.tables() == ["auth_users", "connections", "tg_revision"]
    assert not [
        row for row in server_account.sql("SELECT nspname FROM pg_namespace") if "dk_replaced" in row[0]
    ]


def test_a_failed_upgrade_puts_the_schema_back(sandbox: Sandbox, server_account: Account) -> None:
    install_on(sandbox, server_account, "--no-demo")
    done = sandbox.run(
        "upgrade",
        "--find-links",
        str(sandbox.wheelhouse),
        env={"FAKE_TESTGEN_FAIL": "upgrade-system-version"},
    )
    assert done.returncode == 1
    assert "half_upgraded" not in server_account.tables()
    assert server_account.sql("SELECT revision FROM testgen.tg_revision") == [["5.0.0"]]
    assert sandbox.status()["running"]
    done = sandbox.run("upgrade", "--find-links", str(sandbox.wheelhouse))
    assert done.returncode == 0, done.stdout + done.stderr
    assert server_account.sql("SELECT revision FROM testgen.tg_revision") == [["5.1.0"]]


def embedded_install_with_demo(sandbox: Sandbox) -> None:
    done = sandbox.install("--version", "5.0.0")
    assert done.returncode == 0, done.stdout + done.stderr


def test_migrate_database_moves_the_data_and_the_demo_keeps_working(
    sandbox: Sandbox, server_account: Account
) -> None:
    embedded_install_with_demo(sandbox)
    done = sandbox.run("migrate-database", "--to", server_account.url, env=server_account.env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert server_account.password not in output
    assert "'admin' logged in" in output
    assert sandbox.state()["database"] == server_account.url
    assert (sandbox.home / "testgen/home/pgdata").exists(), "the embedded data stays"
    assert not (sandbox.home / "testgen/home/config.env.before").exists()
    assert server_account.sql("SELECT project_host, project_db FROM testgen.connections") == [
        ["127.0.0.1", f"{server_account.database}_demo"]
    ]
    testgen = sandbox.home / "testgen/venv/bin/testgen"
    env = {"TG_TESTGEN_HOME": str(sandbox.home / "testgen/home"), "HOME": str(sandbox.home / "testgen/home")}
    import subprocess

    profile = subprocess.run(
        [str(testgen), "run-profile"], env={**sandbox.env, **env}, capture_output=True, text=True
    )
    assert profile.returncode == 0, profile.stdout + profile.stderr
    again = sandbox.run("migrate-database", "--to", server_account.url, env=server_account.env)
    assert again.returncode == 2, "a second migration is refused"


def assert_back_on_embedded(sandbox: Sandbox, target: Account) -> None:
    config = (sandbox.home / "testgen/home/config.env").read_text()
    assert "TG_STANDALONE_MODE=yes" in config and "TG_METADATA_DB_HOST" not in config
    assert sandbox.state()["database"] == ""
    assert target.tables() == []
    assert f"{target.database}_demo" not in target.databases()
    leftovers = [
        p.name for p in (sandbox.home / "testgen/home").iterdir() if p.name.startswith("config.env.")
    ]
    assert leftovers == []


def test_a_failed_migration_leaves_the_install_on_its_embedded_data(
    sandbox: Sandbox, server_account: Account
) -> None:
    embedded_install_with_demo(sandbox)
    done = sandbox.run(
        "migrate-database",
        "--to",
        server_account.url,
        env={**server_account.env, "FAKE_TESTGEN_FAIL": "encrypt"},  # after the data is loaded
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Load TestGen's data into the PostgreSQL server" in done.stdout
    assert_back_on_embedded(sandbox, server_account)
    assert sandbox.status()["running"], "TestGen runs again on its embedded data"


MIGRATION_STEPS = (
    "stop",
    "dump_embedded",
    "load_into_server",
    "switch_to_server",
    "start",
    "verify_login",
    "save_state",
)


@pytest.mark.parametrize("death", ["SIGKILL", "SIGHUP"])
@pytest.mark.parametrize("step", MIGRATION_STEPS)
def test_a_migration_killed_in_any_step_leaves_the_embedded_data_then_succeeds(
    sandbox: Sandbox, server_account: Account, step: str, death: str
) -> None:
    embedded_install_with_demo(sandbox)
    process = sandbox.popen(
        "migrate-database",
        "--to",
        server_account.url,
        env={**server_account.env, "DK_INSTALLER_FAILPOINT": step},
    )
    wait_for_line(process, f"failpoint {step}")
    process.send_signal(getattr(signal, death))
    process.communicate(timeout=180)
    repaired = sandbox.run("stop")  # any command that changes the install repairs a killed one first
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert_back_on_embedded(sandbox, server_account)
    done = sandbox.run("migrate-database", "--to", server_account.url, env=server_account.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sandbox.state()["database"] == server_account.url


def test_install_database_on_an_embedded_install_points_to_migrate(
    sandbox: Sandbox, server_account: Account
) -> None:
    assert sandbox.install("--no-demo", "--version", "5.0.0").returncode == 0
    done = sandbox.install("--database", server_account.url, env=server_account.env)
    assert done.returncode == 2
    assert "migrate-database --to" in done.stderr


def test_password_from_a_private_file(sandbox: Sandbox, server_account: Account, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(server_account.password + "\n")
    secret.chmod(0o600)
    done = sandbox.install(
        "--no-demo",
        "--version",
        "5.0.0",
        "--database",
        server_account.url,
        "--database-password-file",
        str(secret),
    )
    assert done.returncode == 0, done.stdout + done.stderr


SERVER_KILLS = [
    ("install", "configure_database"),
    ("upgrade", "dump_schema"),
    ("upgrade", "upgrade_database"),
    ("backup", "backup_schema"),
    ("restore", "load_schema_dump"),
]


@pytest.mark.parametrize("death", ["SIGKILL", "SIGHUP"])
@pytest.mark.parametrize("action, step", SERVER_KILLS)
def test_a_server_action_killed_in_its_database_step_then_a_plain_rerun_succeeds(
    sandbox: Sandbox, server_account: Account, action: str, step: str, death: str
) -> None:
    install = sandbox.install_args("--no-demo", "--version", "5.0.0", "--database", server_account.url)
    if action == "install":
        args = install
    else:
        assert sandbox.run(*install, env=server_account.env).returncode == 0
        archive = sandbox.root / "server.tar.gz"
        if action == "restore":
            assert sandbox.run("backup", "--output", str(archive)).returncode == 0
        args = {
            "upgrade": ["upgrade", "--find-links", str(sandbox.wheelhouse)],
            "backup": ["backup", "--output", str(archive)],
            "restore": ["restore", str(archive), "--yes"],
        }[action]
    process = sandbox.popen(*args, env={**server_account.env, "DK_INSTALLER_FAILPOINT": step})
    wait_for_line(process, f"failpoint {step}")
    process.send_signal(getattr(signal, death))
    process.communicate(timeout=180)
    rerun = sandbox.run(*args, env=server_account.env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert server_account.tables() == ["auth_users", "connections", "tg_revision"]
    schemas = [row[0] for row in server_account.sql("SELECT nspname FROM pg_namespace")]
    assert not [name for name in schemas if "dk_replaced" in name], schemas
    expected = "5.1.0" if action == "upgrade" else "5.0.0"
    assert server_account.sql("SELECT revision FROM testgen.tg_revision") == [[expected]]
    assert not (sandbox.home / "journal.json").exists()


def test_configure_database_takes_a_new_password_and_refuses_a_database_without_testgen(
    sandbox: Sandbox, server_account: Account
) -> None:
    install_on(sandbox, server_account, "--no-demo")
    config = sandbox.home / "testgen/home/config.env"
    new_password = secrets.token_urlsafe(14)
    server_account.server.sql(f"ALTER ROLE {server_account.role} PASSWORD '{new_password}'")
    assert sandbox.status()["database"]["answers"] is False
    elsewhere = account(server_account.server)
    refused = sandbox.run("configure", "--database", elsewhere.url, env=elsewhere.env)
    assert refused.returncode == 3 and "holds no TestGen schema" in refused.stdout + refused.stderr
    assert server_account.password in config.read_text(), "nothing changed"
    interrupted = sandbox.popen(
        "configure",
        "--database",
        server_account.url,
        env={"PGPASSWORD": new_password, "DK_INSTALLER_FAILPOINT": "restart"},
    )
    wait_for_line(interrupted, "failpoint restart")
    interrupted.send_signal(signal.SIGHUP)
    interrupted.communicate(timeout=120)
    assert server_account.password in config.read_text(), "an interrupted change is rolled back"
    done = sandbox.run("configure", "--database", server_account.url, env={"PGPASSWORD": new_password})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'admin' logged in" in done.stdout
    assert new_password in config.read_text() and new_password not in done.stdout + done.stderr
    assert sandbox.status()["database"]["answers"] is True


def test_an_admin_user_sets_the_schema_up_for_an_app_user_that_may_not(
    sandbox: Sandbox, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    admin = account(postgres_server)  # owns the database
    app_role, app_password = f"app_{secrets.token_hex(4)}", secrets.token_urlsafe(14)
    postgres_server.create_role(app_role, app_password)
    url = postgres_server.url(app_role, admin.database)
    alone = sandbox.install("--no-demo", "--database", url, env={"PGPASSWORD": app_password})
    assert alone.returncode == 3 and "--database-admin-user" in alone.stdout + alone.stderr
    secret = tmp_path / "admin-pw"
    secret.write_text(admin.password)
    secret.chmod(0o600)
    done = sandbox.install(
        "--no-demo",
        "--version",
        "5.0.0",
        "--database",
        url,
        "--database-admin-user",
        admin.role,
        "--database-admin-password-file",
        str(secret),
        env={"PGPASSWORD": app_password},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert admin.password not in output and app_password not in output
    owner = admin.sql("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'testgen'")
    assert owner == [[admin.role]]
    assert sandbox.status()["database"]["answers"]


def rewritten(
    source: Path, target: Path, *, data: str, drop: str | None = None, add: Path | None = None
) -> None:
    """A copy of the backup `source` whose manifest says `data`, without the entry `drop`, with the
    folder `add` (an embedded install's pgdata) put in as home/pgdata."""
    import io

    with tarfile.open(source) as old, tarfile.open(target, "w:gz") as new:
        for member in old.getmembers():
            if member.name == drop:
                continue
            if member.name == "manifest.json":
                manifest = json.loads(old.extractfile(member).read())
                manifest["data"] = data
                body = json.dumps(manifest).encode()
                member.size = len(body)
                new.addfile(member, io.BytesIO(body))
            else:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
        if add is not None:
            new.add(str(add), arcname="home/pgdata")


def test_a_crafted_server_backup_is_refused_before_testgen_stops(
    sandbox: Sandbox, server_account: Account, tmp_path: Path
) -> None:
    install_on(sandbox, server_account, "--no-demo")
    archive = tmp_path / "server.tar.gz"
    assert sandbox.run("backup", "--output", str(archive)).returncode == 0
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    crafted = {
        "no dump": (dict(data="server", drop="schema.dump"), "no schema.dump"),
        "a database too": (dict(data="server", add=pgdata), "holds an embedded database"),
        "says embedded": (dict(data="embedded"), "no database"),
    }
    for name, (change, complaint) in crafted.items():
        target = tmp_path / f"{name.replace(' ', '-')}.tar.gz"
        rewritten(archive, target, **change)
        done = sandbox.run("restore", str(target), "--yes")
        assert done.returncode == 1, (name, done.stdout + done.stderr)
        assert complaint in done.stdout + done.stderr, (name, done.stdout + done.stderr)
        assert sandbox.status()["running"], f"{name}: TestGen was never stopped"
    assert server_account.tables() == ["auth_users", "connections", "tg_revision"]


def test_doctor_shows_the_server_and_fails_when_it_does_not_answer(
    sandbox: Sandbox, server_account: Account
) -> None:
    install_on(sandbox, server_account, "--no-demo")
    healthy = sandbox.run("doctor")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "PostgreSQL server" in healthy.stdout and server_account.url in healthy.stdout
    server_account.server.sql(f"ALTER ROLE {server_account.role} PASSWORD 'changed-elsewhere'")
    broken = sandbox.run("doctor")
    assert broken.returncode == 3
    assert "PostgreSQL server" in broken.stdout and "password" in broken.stdout + broken.stderr
