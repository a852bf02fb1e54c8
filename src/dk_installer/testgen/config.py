"""TestGen's own facts and files: the package name, the admin user, config.env (keeping lines the
user added), credentials.txt, and which version a venv holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.bootstrap import venv_bin
from dk_installer.config import write_file_atomically
from dk_installer.runner import probe

if TYPE_CHECKING:
    from dk_installer.paths import Paths


PACKAGE = "dataops-testgen"
PACKAGE_EXTRA = "standalone"
TESTGEN_MIN_PYTHON = (3, 11)
ADMIN_USERNAME = "admin"
EMBEDDED_DEMO_DATABASE = "demo_db"  # TestGen's default PROJECT_DATABASE_NAME, in the embedded PostgreSQL
EMBEDDED_HOST = "<embedded>"  # the demo connection's host in standalone mode (resolved only there)
# Set in the environment of every TestGen process the installer starts, and inherited by their
# children (PostgreSQL included): how stop() tells our processes from a `testgen` the user runs.
OWNER_VARIABLE = "DK_INSTALLER_TESTGEN"


def demo_database(app_database: str) -> str:
    """The demo's database on the user's server (TestGen's PROJECT_DATABASE_NAME): named after
    TestGen's own, so that it never takes a `demo_db` of the user's, nor another install's."""
    return f"{app_database}_demo"[:63]  # PostgreSQL's limit for a name


def installed_version(venv: Path) -> str | None:
    """The TestGen version installed in `venv`, or None when there is none that runs."""
    python = venv_bin(venv, "python")
    if not os.path.exists(python):
        return None
    try:
        # -I: importlib.metadata imports csv, which a csv.py in the current folder would replace.
        result = probe(
            [python, "-I", "-c", f"from importlib.metadata import version; print(version('{PACKAGE}'))"],
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


class TestGenConfig:
    """TestGen's config.env (TestGen reads a setting from its environment first, then from here).
    Changes keep the order and every line the user added."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        values: dict[str, str] = {}
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return values
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
        return values

    def update(self, **changes: str | None) -> None:
        """Set (or, for None, remove) keys; does nothing while TestGen has no config.env yet."""
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return
        pending = dict(changes)
        kept: list[str] = []
        for line in lines:
            key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else ""
            if key not in changes:
                kept.append(line)
            elif pending.get(key) is not None:
                kept.append(f"{key}={pending.pop(key)}")
        kept += [f"{key}={value}" for key, value in pending.items() if value is not None]
        write_file_atomically(self.path, "\n".join(kept) + "\n", mode=0o600)

    def set_analytics(self, enabled: bool) -> None:
        """TestGen's own analytics follow the installer's choice (its setup always writes 'yes')."""
        self.update(TG_ANALYTICS="yes" if enabled else "no")


def write_credentials(paths: Paths, username: str, password: str, ui_url: str) -> None:
    write_file_atomically(
        paths.credentials,
        "DataOps TestGen login, created by dk-installer. Keep this file private.\n"
        f"URL:      {ui_url}\nUsername: {username}\nPassword: {password}\n",
        mode=0o600,
    )


def parse_credentials(path: Path) -> tuple[str, str] | None:
    """(username, password) from a credentials file written by write_credentials."""
    try:
        text = path.read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    username, password = fields.get("Username", "").strip(), fields.get("Password", "").strip()
    return (username, password) if username and password else None


def read_credentials(paths: Paths) -> tuple[str, str] | None:
    if paths.credentials.exists():
        return parse_credentials(paths.credentials)
    config = TestGenConfig(paths.config_env).read()
    if config.get("TESTGEN_PASSWORD"):
        return config.get("TESTGEN_USERNAME", ADMIN_USERNAME), config["TESTGEN_PASSWORD"]
    return None
