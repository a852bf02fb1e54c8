"""Paths: every file and folder the installer writes, under DK_INSTALLER_HOME or the user's config
folder (nothing else is touched), each named once."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dk_installer.bootstrap import RUNTIME_DIR, installer_home


@dataclasses.dataclass(frozen=True)
class Paths:
    """Every file the installer writes lives under `home` or `config` (nothing else is touched),
    and every one of them is named here."""

    home: Path
    config: Path
    bin_dir: Path | None = None  # None: ~/.local/bin

    @classmethod
    def from_environment(cls) -> Paths:
        config_root = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        bin_dir = os.environ.get("XDG_BIN_HOME") or os.path.join(os.path.expanduser("~"), ".local", "bin")
        return cls(
            home=Path(installer_home()),
            config=Path(config_root).absolute() / "dk-installer",
            bin_dir=Path(bin_dir).absolute(),
        )

    @property
    def launcher(self) -> Path:
        """The `dk-installer` command on PATH (the XDG bin dir, like pipx and uv)."""
        return (self.bin_dir or Path.home() / ".local" / "bin") / "dk-installer"

    # DK_INSTALLER_HOME: the installer's own files
    @property
    def runtime(self) -> Path:
        return self.home / RUNTIME_DIR

    @property
    def installer_copy(self) -> Path:
        return self.home / "dk_installer.py"

    @property
    def state(self) -> Path:
        return self.home / "state.json"

    @property
    def credentials(self) -> Path:
        return self.home / "credentials.txt"

    @property
    def lock(self) -> Path:
        return self.home / ".lock"

    @property
    def journal(self) -> Path:
        """What a mutating action is doing, so the next command can recover if it was killed."""
        return self.home / "journal.json"

    @property
    def tmp(self) -> Path:
        """TMPDIR for uv and TestGen, so that their temporary files stay in here too."""
        return self.home / "tmp"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def app_log(self) -> Path:
        return self.logs / "testgen-app.log"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def uv_cache(self) -> Path:
        return self.cache / "uv"

    @property
    def pip_cache(self) -> Path:
        return self.cache / "pip"

    @property
    def backups(self) -> Path:
        """Where `backup` writes unless --output says otherwise."""
        return self.home / "backups"

    @property
    def pythons(self) -> Path:
        """Interpreters that uv downloads when the machine has no Python 3.11+."""
        return self.home / "pythons"

    # DK_INSTALLER_HOME/testgen: TestGen's venvs, data and run files
    @property
    def testgen(self) -> Path:
        return self.home / "testgen"

    @property
    def venv(self) -> Path:
        """A symlink to the active venv in `venvs/`: swapping it is atomic, and venvs never move."""
        return self.testgen / "venv"

    @property
    def venvs(self) -> Path:
        return self.testgen / "venvs"

    @property
    def testgen_home(self) -> Path:
        """TestGen's TG_TESTGEN_HOME (and HOME): config.env, pgdata, its own logs."""
        return self.testgen / "home"

    @property
    def config_env(self) -> Path:
        return self.testgen_home / "config.env"

    @property
    def pgdata(self) -> Path:
        return self.testgen_home / "pgdata"

    @property
    def testgen_logs(self) -> Path:
        return self.testgen_home / "log"

    @property
    def tls_cert(self) -> Path:
        """The HTTPS certificate (and chain) given with --ssl-cert-file, copied here."""
        return self.testgen_home / "tls" / "cert.pem"

    @property
    def tls_key(self) -> Path:
        return self.testgen_home / "tls" / "key.pem"

    @property
    def upgrade_backup(self) -> Path:
        """The copy of testgen_home that an upgrade puts back when it fails."""
        return self.testgen / "home.backup"

    @property
    def backup_snapshot(self) -> Path:
        """The copy of TestGen's home that `backup` archives while TestGen runs again."""
        return self.testgen / "home.snapshot"

    @property
    def settings_before(self) -> Path:
        """What `configure` puts back on failure: config.env, the HTTPS files, the receipt and
        the credentials as they were (complete once renamed to this name)."""
        return self.testgen / "settings.before"

    @property
    def backup_schema(self) -> Path:
        """pg_dump of TestGen's schema on the user's server, archived by `backup` beside the home."""
        return self.testgen / "schema.dump"

    @property
    def restore_staging(self) -> Path:
        """Where `restore` unpacks a backup before it takes the current home's place."""
        return self.testgen / "home.restoring"

    @property
    def run_dir(self) -> Path:
        """TestGen's XDG_RUNTIME_DIR (pgserver keeps its lock in python_PostgresServer/ there)."""
        return self.testgen / "run"

    @property
    def app_pid(self) -> Path:
        return self.testgen / "app.pid"

    # Written only by `service enable`, where the service manager looks for them
    @property
    def systemd_unit(self) -> Path:
        return self.config.parent / "systemd" / "user" / "dk-installer-testgen.service"

    @property
    def launchd_plist(self) -> Path:
        return Path.home() / "Library" / "LaunchAgents" / "com.datakitchen.dk-installer-testgen.plist"

    # The user config dir: settings and analytics
    @property
    def saved_choices(self) -> Path:
        return self.config / "settings.json"

    @property
    def analytics(self) -> Path:
        return self.config / "analytics"

    @property
    def spool(self) -> Path:
        return self.analytics / "spool.jsonl"

    @property
    def spool_lock(self) -> Path:
        return self.analytics / "spool.lock"

    @property
    def history(self) -> Path:
        return self.analytics / "history.jsonl"

    @property
    def sender_state(self) -> Path:
        return self.analytics / "sender.json"

    @property
    def sender_lock(self) -> Path:
        return self.analytics / "sender.lock"
