"""A real PostgreSQL server for tests: Debian's binaries (the `postgresql` package, which
tests/run.sh installs), a cluster made by initdb in a temporary folder, SCRAM-SHA-256 for every
login, listening on 127.0.0.1 only, plain or TLS-only (pg_hba.conf `hostssl`). As root the cluster
belongs to the `postgres` user (initdb refuses root); the superuser's password reaches initdb in a
0600 file, never in argv."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pg8000.native
import trustme

SUPERUSER = "postgres"
HBA_LINES = ("{kind} all all 127.0.0.1/32 scram-sha-256", "{kind} all all ::1/128 scram-sha-256")


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin that has initdb."""
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    numbered = [path for path in found if re.fullmatch(r"\d+", path.parent.name)]
    return max(numbered, key=lambda path: int(path.parent.name), default=None)


class PostgresServer:
    """One cluster: start() it, sql() as its superuser, make roles and databases, stop() it."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("no PostgreSQL under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
        self.bin = binaries
        self.port = port
        self.tls = tls
        self.superuser_password = secrets.token_urlsafe(18)
        # Outside pytest's temporary folder (0700, root's), which the postgres user cannot reach,
        # and which the per-test leak check watches: this server outlives single tests.
        self.root = Path(tempfile.mkdtemp(prefix="dk-installer-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.ca: trustme.CA | None = trustme.CA() if tls else None
        self.ca_file = self.root / "ca.pem"
        if self.ca is not None:
            self.ca.cert_pem.write_to_path(str(self.ca_file))

    def _as_owner(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.owner.pw_name, "--", *argv] if self.owner else list(argv)

    def _give(self, path: Path) -> None:
        if self.owner:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def _run(self, *argv: str) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        result = subprocess.run(
            self._as_owner(*argv), env=env, cwd=self.root, capture_output=True, text=True, timeout=120
        )
        if result.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}{log}")

    def start(self) -> PostgresServer:
        """initdb, configure, pg_ctl start, and wait until it answers; on any failure the server
        is stopped and its folder removed."""
        try:
            self._initdb()
            self._configure()
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            pg_ctl = str(self.bin / "pg_ctl")
            self._run(
                pg_ctl, "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", options
            )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _initdb(self) -> None:
        self.data.mkdir(mode=0o700)
        self._give(self.data)
        self._give(self.root)
        pwfile = self.root / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.superuser_password + "\n")
        self._give(pwfile)
        try:
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                f"--username={SUPERUSER}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            )
        finally:
            pwfile.unlink()

    def _configure(self) -> None:
        kind = "hostssl" if self.tls else "host"
        lines = ["local all all scram-sha-256", *(line.format(kind=kind) for line in HBA_LINES)]
        (self.data / "pg_hba.conf").write_text("\n".join(lines) + "\n")
        if self.ca is None:
            return
        leaf = self.ca.issue_cert("127.0.0.1", "localhost")
        leaf.cert_chain_pems[0].write_to_path(str(self.data / "server.crt"))
        leaf.private_key_pem.write_to_path(str(self.data / "server.key"))
        for name in ("server.crt", "server.key"):
            (self.data / name).chmod(0o600)
            self._give(self.data / name)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sql("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """pg_ctl stop -m fast, then SIGKILL for whatever is still running from the folder; the
        folder goes too."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run(
                    str(self.bin / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "30", "-D", str(self.data)
                )
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(Exception):
                os.kill(int(pid_file.read_text().split()[0]), 9)
                time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """How tests reach this server as its superuser: TLS verified by its CA, or plain."""
        if self.ca is None:
            return False
        return ssl.create_default_context(cafile=str(self.ca_file))

    def sql(self, statement: str, database: str = "postgres", **params: Any) -> list[list[Any]]:
        """Run one statement as the superuser, over TCP."""
        connection = pg8000.native.Connection(
            user=SUPERUSER,
            host="127.0.0.1",
            port=self.port,
            database=database,
            password=self.superuser_password,
            ssl_context=self.ssl_context(),
            timeout=30,
        )
        try:
            return connection.run(statement, **params) or []
        finally:
            connection.close()

    def create_role(
        self, name: str, password: str, *, createdb: bool = False, superuser: bool = False
    ) -> None:
        flags = " CREATEDB" if createdb else ""
        flags += " SUPERUSER" if superuser else ""
        self.sql(
            f"CREATE ROLE {pg8000.native.identifier(name)} LOGIN{flags} "
            f"PASSWORD {pg8000.native.literal(password)}"
        )

    def create_database(self, name: str, owner: str) -> None:
        self.sql(f"CREATE DATABASE {pg8000.native.identifier(name)} OWNER {pg8000.native.identifier(owner)}")

    def url(self, user: str, dbname: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"
