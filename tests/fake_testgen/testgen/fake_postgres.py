"""The stand-in's PostgreSQL: `python -I -S fake_postgres.py -D PGDATA` writes postmaster.pid and
waits for SIGINT or SIGTERM. A script of the standard library alone, run without site: every
stand-in TestGen command starts one when none runs (hundreds per test run), so it starts in a
few milliseconds instead of importing the stand-in package."""

import os
import signal
import sys
import threading


def recover(pgdata: str) -> None:
    """Like PostgreSQL: with recovery.signal or standby.signal it starts in recovery and runs
    restore_command (the last one set in postgresql.conf, then postgresql.auto.conf) with sh."""
    if not any(os.path.exists(os.path.join(pgdata, name)) for name in ("recovery.signal", "standby.signal")):
        return
    command = ""
    for name in ("postgresql.conf", "postgresql.auto.conf"):
        path = os.path.join(pgdata, name)
        if os.path.exists(path):
            with open(path) as settings:
                for line in settings.read().splitlines():
                    if line.strip().startswith("restore_command"):
                        command = line.split("=", 1)[1].strip().strip("'")
    if command:
        import subprocess

        subprocess.run(["sh", "-c", command], cwd=pgdata, check=False)


def main(pgdata: str) -> int:
    recover(pgdata)
    pid_file = os.path.join(pgdata, "postmaster.pid")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with open(pid_file, "w") as pid:
        pid.write(f"{os.getpid()}\n{pgdata}\n")
    stop.wait()
    os.unlink(pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[2]))
