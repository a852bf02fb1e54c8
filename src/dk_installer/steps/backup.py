"""Backups: the safety copy an upgrade puts back on failure, the archive `backup` writes, and the
steps of `restore` (check, unpack, swap in)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dk_installer import __version__
from dk_installer.config import now_iso, remove_tree, write_file_atomically
from dk_installer.errors import ErrorCode, InstallerError, StepSkipped
from dk_installer.runner import redact, run_command
from dk_installer.steps.base import Step
from dk_installer.testgen.config import parse_credentials
from dk_installer.versions import is_newer

if TYPE_CHECKING:
    from dk_installer.console import Progress
    from dk_installer.journal import JournalRecord
    from dk_installer.paths import Paths
    from dk_installer.steps.base import ActionContext


def copy_testgen_home(paths: Paths, target: Path, progress: Progress, error_code: ErrorCode) -> None:
    """An exact copy of TestGen's home, taken while TestGen is stopped (cp -a keeps the owner and
    modes of pgdata, which pgserver sets when run as root)."""
    progress.update(f"copying {paths.testgen_home}")
    run_command(
        ["cp", "-a", str(paths.testgen_home), str(target)],
        progress=progress,
        error_code=error_code,
        what="copying TestGen's data",
    )


def put_back_safety_copy(paths: Paths, entry: JournalRecord) -> None:
    """After a kill: the complete copy of TestGen's home goes back in its place (also when the
    home is missing, as a kill between SwapHome's two renames leaves it); a half-made one goes."""
    backup = paths.upgrade_backup
    if backup.exists() and (entry.safety_copy or not paths.testgen_home.exists()):
        remove_tree(paths.testgen_home)
        os.rename(backup, paths.testgen_home)
    else:
        remove_tree(backup)


def is_partial_backup(path: Path) -> bool:
    """A backup WriteBackup was writing: `.<name>.<pid>.tmp`, a regular file owned by this user."""
    import re
    import stat

    try:
        info = os.lstat(path)
    except OSError:
        return False
    named = re.fullmatch(r"\..+\.tar\.gz\.\d+\.tmp", path.name) is not None
    return named and stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()


class BackupData(Step):
    """A safety copy of TestGen's data before its database schema is upgraded, by `upgrade` or by
    `install` on data kept from an earlier install (cp -a keeps the owner of pgdata, which pgserver
    sets when run as root)."""

    name = "backup_data"
    title = "Back up TestGen's data"

    def __init__(self) -> None:
        self.started = False
        self.complete = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.paths.config_env.exists():
            raise StepSkipped("no earlier data")
        backup = ctx.paths.upgrade_backup
        remove_tree(backup)
        self.started = True
        copy_testgen_home(ctx.paths, backup, progress, ErrorCode.UPGRADE_FAILED)
        self.complete = True
        ctx.journal.record(safety_copy=True)

    def undo(self, ctx: ActionContext) -> None:
        """Put the copy back, but only a complete one: a half-made copy is dropped instead."""
        backup = ctx.paths.upgrade_backup
        if self.complete and backup.exists():
            ctx.testgen.stop()
            remove_tree(ctx.paths.testgen_home)
            os.rename(backup, ctx.paths.testgen_home)
        elif self.started:
            remove_tree(backup)

    def commit(self, ctx: ActionContext) -> None:
        shutil.rmtree(ctx.paths.upgrade_backup, ignore_errors=True)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        put_back_safety_copy(paths, entry)

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        remove_tree(paths.upgrade_backup)


BACKUP_FORMAT = "dk-installer-backup"
BACKUP_FORMAT_VERSION = 1


class SnapshotData(Step):
    """A copy of TestGen's home while TestGen is stopped (a stopped PostgreSQL copies exactly);
    the archive is then written from it while TestGen runs again, so TestGen is down only for
    the copy (cp -a keeps owners and modes: pgdata is 0700, owned by pgserver's user as root)."""

    name = "snapshot_data"
    title = "Copy TestGen's data"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        remove_tree(ctx.paths.backup_snapshot)
        copy_testgen_home(ctx.paths, ctx.paths.backup_snapshot, progress, ErrorCode.BACKUP_FAILED)

    def undo(self, ctx: ActionContext) -> None:
        remove_tree(ctx.paths.backup_snapshot)

    def commit(self, ctx: ActionContext) -> None:
        remove_tree(ctx.paths.backup_snapshot)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        remove_tree(paths.backup_snapshot)

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        remove_tree(paths.backup_snapshot)


class WriteBackup(Step):
    """TestGen's home (the PostgreSQL data, config.env with the keys that decrypt stored
    connection passwords, the HTTPS files), credentials.txt and a manifest, as one tar.gz that
    only the user can read, written under a temporary name and renamed when complete."""

    name = "write_backup"
    title = "Write the backup"

    def __init__(self, target: Path) -> None:
        self.target = target
        self.partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        assert ctx.state
        paths = ctx.paths
        ctx.journal.record(partial_file=str(self.partial))
        manifest = {
            "format": BACKUP_FORMAT,
            "format_version": BACKUP_FORMAT_VERSION,
            "testgen_version": ctx.state.product_version,
            "postgres_major": (paths.pgdata / "PG_VERSION").read_text().strip()
            if (paths.pgdata / "PG_VERSION").exists()
            else None,
            "installer_version": __version__,
            "created": now_iso(),
        }
        try:
            self.write(paths, manifest, progress)
        except OSError as exc:
            raise InstallerError(
                f"Could not write the backup to {self.target}: {exc.strerror or exc}.",
                code=ErrorCode.BACKUP_FAILED,
            ) from None
        size = self.target.stat().st_size
        progress.result = f"{self.target} ({size / 1024**2:.1f} MB)"

    def write(self, paths: Paths, manifest: dict[str, Any], progress: Progress) -> None:
        import io
        import tarfile

        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime = len(data), int(time.time())
            archive.addfile(info, io.BytesIO(data))
            progress.update("compressing the copy")
            archive.add(
                str(paths.backup_snapshot),
                arcname="home",
                filter=lambda member: None if member.name.startswith("home/log") else member,
            )
            if paths.credentials.exists():
                archive.add(str(paths.credentials), arcname="credentials.txt")
        os.replace(self.partial, self.target)

    def undo(self, ctx: ActionContext) -> None:
        remove_tree(self.partial)
        remove_tree(ctx.paths.backup_snapshot)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        """Remove the archive cut short, but only a file that is surely that: named as
        WriteBackup names it, a regular file of this user's (never what a journal merely says)."""
        if entry.partial_file and is_partial_backup(Path(entry.partial_file)):
            remove_tree(Path(entry.partial_file))
        remove_tree(paths.backup_snapshot)


def read_backup(path: Path, installed_version: str) -> dict[str, Any]:
    """The manifest of a backup this installer can restore over `installed_version`; otherwise
    a clear refusal (a missing, corrupt or foreign file, or one from a newer TestGen)."""
    import tarfile

    def refuse(why: str, code: ErrorCode = ErrorCode.BACKUP_INVALID) -> InstallerError:
        return InstallerError(f"Cannot restore {path}: {why}. Nothing was changed.", code=code)

    if not path.is_file():
        raise refuse("there is no such file")
    try:
        with tarfile.open(path, "r:gz") as archive:
            names = archive.getnames()
            member = archive.extractfile("manifest.json") if "manifest.json" in names else None
            manifest = json.loads(member.read()) if member else None
            for item in archive.getmembers():
                safe = not item.name.startswith("/") and ".." not in Path(item.name).parts
                if not safe or not (item.isfile() or item.isdir()):
                    raise refuse(f"it holds an entry this installer never writes ({item.name})")
    except (tarfile.TarError, OSError, EOFError, ValueError):
        raise refuse("it is not a readable .tar.gz (damaged or cut short?)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise refuse("it is not a dk-installer backup")
    if manifest.get("format_version") != BACKUP_FORMAT_VERSION or "home/config.env" not in names:
        raise refuse("it is a backup this installer version does not know")
    backup_version = str(manifest.get("testgen_version"))
    if is_newer(backup_version, installed_version):
        raise refuse(
            f"it comes from TestGen {backup_version}, newer than the installed {installed_version}; "
            f"upgrade first (`upgrade --version {backup_version}`)",
            ErrorCode.VERSION_CONFLICT,
        )
    return manifest


class UnpackBackup(Step):
    name = "unpack_backup"
    title = "Unpack the backup"

    def __init__(self, source: Path) -> None:
        self.source = source

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        import tarfile

        staging = ctx.paths.restore_staging
        remove_tree(staging)
        staging.mkdir(parents=True, mode=0o700)
        progress.update(f"unpacking {self.source}")
        # Every entry was checked by read_backup; owners and modes must come back as they were
        # (pgdata is 0700, and owned by pgserver's user when TestGen runs as root).
        trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
        with tarfile.open(self.source, "r:gz") as archive:
            archive.extractall(staging, **trusted)
        restored = parse_credentials(staging / "credentials.txt")
        if restored:
            ctx.password = restored[1]
            redact.add(ctx.password)

    def undo(self, ctx: ActionContext) -> None:
        remove_tree(ctx.paths.restore_staging)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        remove_tree(paths.restore_staging)


class SwapHome(Step):
    """The restored home takes the current one's place in one rename; the current one is kept
    aside (where an upgrade keeps its safety copy) until the restored one runs."""

    name = "swap_home"
    title = "Put the restored data in place"

    def __init__(self) -> None:
        self.swapped = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        paths = ctx.paths
        remove_tree(paths.upgrade_backup)
        os.rename(paths.testgen_home, paths.upgrade_backup)
        ctx.journal.record(safety_copy=True)
        os.rename(paths.restore_staging / "home", paths.testgen_home)
        self.swapped = True

    def undo(self, ctx: ActionContext) -> None:
        paths = ctx.paths
        if paths.upgrade_backup.exists():
            ctx.testgen.stop()
            remove_tree(paths.testgen_home)
            os.rename(paths.upgrade_backup, paths.testgen_home)

    def commit(self, ctx: ActionContext) -> None:
        paths = ctx.paths
        restored = paths.restore_staging / "credentials.txt"
        if restored.exists():
            write_file_atomically(paths.credentials, restored.read_text(), mode=0o600)
        remove_tree(paths.upgrade_backup)
        remove_tree(paths.restore_staging)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        put_back_safety_copy(paths, entry)

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        restored = paths.restore_staging / "credentials.txt"
        if restored.exists():
            write_file_atomically(paths.credentials, restored.read_text(), mode=0o600)
        remove_tree(paths.upgrade_backup)
        remove_tree(paths.restore_staging)
