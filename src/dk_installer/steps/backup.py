"""Backups: the safety copy an upgrade puts back on failure, the archive `backup` writes, and the
steps of `restore` (check, unpack, swap in)."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from dk_installer import __version__
from dk_installer.config import now_iso, remove_tree, write_file_atomically
from dk_installer.errors import ErrorCode, InstallerError, StepSkipped
from dk_installer.runner import redact, run_command
from dk_installer.steps.base import Step
from dk_installer.testgen.config import parse_credentials
from dk_installer.versions import is_newer

if TYPE_CHECKING:
    import tarfile
    from collections.abc import Callable

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
            # "server": TestGen's data is the schema dump of the user's PostgreSQL server
            "data": "server" if paths.backup_schema.exists() else "embedded",
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
            if paths.backup_schema.exists():
                archive.add(str(paths.backup_schema), arcname="schema.dump")
        os.replace(self.partial, self.target)
        remove_tree(paths.backup_schema)

    def undo(self, ctx: ActionContext) -> None:
        remove_tree(self.partial)
        remove_tree(ctx.paths.backup_snapshot)
        remove_tree(ctx.paths.backup_schema)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        """Remove the archive cut short, but only a file that is surely that: named as
        WriteBackup names it, a regular file of this user's (never what a journal merely says)."""
        if entry.partial_file and is_partial_backup(Path(entry.partial_file)):
            remove_tree(Path(entry.partial_file))
        remove_tree(paths.backup_snapshot)
        remove_tree(paths.backup_schema)


# Limits of what `restore` unpacks. A manifest is a few hundred bytes and a PostgreSQL settings
# file some 30 KB; a TestGen home holds a few thousand files. A database compresses 3 to 20 times;
# beyond 100 times (and 512 MB) an archive is a decompression bomb, refused from its headers.
MAX_MANIFEST_BYTES = 64 * 1024
MAX_SMALL_FILE_BYTES = 1024**2
MAX_ENTRIES = 200_000
MAX_RATIO = 100
RATIO_FLOOR_BYTES = 512 * 1024**2
DISK_MARGIN_BYTES = 256 * 1024**2
TAR_BLOCK = 512
TOP_FILES = ("manifest.json", "credentials.txt", "schema.dump")
# With one of these in pgdata, PostgreSQL starts in recovery and runs restore_command.
SIGNAL_FILES = tuple(f"home/pgdata/{name}" for name in ("recovery.signal", "standby.signal", "recovery.conf"))
# Settings that make PostgreSQL run a shell command, load a library, or use files outside pgdata.
COMMAND_SETTINGS = frozenset(
    {
        "archive_command",
        "archive_cleanup_command",
        "recovery_end_command",
        "restore_command",
        "ssl_passphrase_command",
    }
)
LIBRARY_SETTINGS = frozenset(
    {"shared_preload_libraries", "local_preload_libraries", "session_preload_libraries", "archive_library"}
)
FILE_SETTINGS = frozenset({"data_directory", "config_file", "hba_file", "ident_file", "external_pid_file"})
INCLUDES = frozenset({"include", "include_dir", "include_if_exists"})
MAX_INCLUDE_DEPTH = 10  # PostgreSQL's own limit
# PostgreSQL's configuration lexer (guc-file.l): its letters include bytes 0x80-0xff, its spaces
# are [ \t\n\r\f\v]; a quoted value doubles or backslash-escapes its quotes.
_NAME = r"[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*"
SETTING_LINE = re.compile(rf"[ \t\f\v]*({_NAME}(?:\.{_NAME})?)[ \t\f\v]*=?[ \t\f\v]*(.*)")
QUOTED = re.compile(r"'((?:[^'\\]|\\.|'')*)'")


class BadBackup(Exception):
    """Why an archive cannot be restored; read_backup and UnpackBackup name the file."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def refusal(path: Path, why: str, code: ErrorCode = ErrorCode.BACKUP_INVALID) -> InstallerError:
    return InstallerError(f"Cannot restore {path}: {why}. Nothing was changed.", code=code)


def size_text(size: int) -> str:
    return f"{size / 1024**3:.1f} GB" if size >= 1024**3 else f"{size / 1024**2:.1f} MB"


def open_backup(path: Path) -> BinaryIO:
    """The backup, opened once: every check and the unpacking read this one handle, so a file
    put in its place after the checks is never read. O_NONBLOCK: a FIFO is refused, not waited on."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise refusal(path, "there is no such file") from None
    except OSError as exc:
        raise refusal(path, f"it cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refusal(path, "it is not a regular file")
    os.set_blocking(fd, True)
    # Unbuffered: a rewind reads the file again, never bytes kept from the checks (gzip buffers).
    return os.fdopen(fd, "rb", buffering=0)


def entry_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return "an entry of another kind"


def check_entry(member: tarfile.TarInfo, kinds: dict[str, bool]) -> None:
    """Accept only what WriteBackup writes: regular files and folders, named below the archive's
    root, without setuid, setgid or sticky bits; `kinds` records each name (True: a folder)."""
    import tarfile

    name = member.name
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise BadBackup(f"it holds an entry named outside the backup ({name})")
    is_dir = member.isdir()
    if parts[0] != "home" and not (name in TOP_FILES and not is_dir):
        raise BadBackup(
            f"it is not a dk-installer backup (it holds {name}, which this installer never writes)"
        )
    if not is_dir and member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise BadBackup(f"it holds {entry_kind(member)} ({name}); a backup holds only files and folders")
    if member.mode & 0o7000:
        raise BadBackup(f"{name} has setuid, setgid or sticky bits, which a backup never has")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if kinds.setdefault(parent, True) is False:
            raise BadBackup(f"{parent} is a file, not a folder, yet {name} lies in it")
    if name in kinds and not (is_dir and kinds[name]):
        raise BadBackup(f"it holds {name} twice")
    kinds[name] = is_dir


class Tally:
    """What the archive unpacks to, counted from each header before its data is decompressed,
    so a decompression bomb is refused when its header is read."""

    def __init__(self, compressed: int) -> None:
        self.compressed = compressed
        self.limit = max(RATIO_FLOOR_BYTES, MAX_RATIO * compressed)
        self.entries = 0
        self.unpacked = 0

    def count(self, member: tarfile.TarInfo) -> None:
        self.entries += 1
        self.unpacked += TAR_BLOCK + -(-member.size // TAR_BLOCK) * TAR_BLOCK
        if self.entries > MAX_ENTRIES:
            raise BadBackup(f"it holds more than {MAX_ENTRIES:,} entries, far more than a TestGen home")
        if self.unpacked > self.limit:
            raise BadBackup(
                f"it would unpack to more than {size_text(self.unpacked)}, over {MAX_RATIO} times its "
                f"compressed size of {size_text(self.compressed)} (a decompression bomb?)"
            )


def parse_setting(line: str) -> tuple[str, str] | None:
    """The name (lower case) and value of one line of a PostgreSQL settings file, or None."""
    match = SETTING_LINE.match(line)
    if not match:
        return None
    rest = match.group(2)
    quoted = QUOTED.match(rest)
    if quoted:
        value = re.sub(r"\\(.)", r"\1", quoted.group(1).replace("''", "'"))
    else:
        value = re.split(r"[ \t\f\v#]", rest, maxsplit=1)[0]
    return match.group(1).lower(), value


def setting_problem(key: str, value: str) -> str | None:
    if key in COMMAND_SETTINGS and value:
        return "PostgreSQL would run a command"
    if (key in LIBRARY_SETTINGS and value) or (
        key == "dynamic_library_path" and value not in ("", "$libdir")
    ):
        return "PostgreSQL would load a library"
    if (key == "jit_provider" and value not in ("", "llvmjit")) or (key in FILE_SETTINGS and value):
        return "PostgreSQL would use files outside its data folder"
    if (key == "log_directory" and (value.startswith("/") or ".." in value.split("/"))) or (
        key == "log_filename" and "/" in value
    ):
        return "PostgreSQL would write its logs outside its data folder"
    return None


def check_settings(name: str, kinds: dict[str, bool], read: Callable[[str], bytes], depth: int = 0) -> None:
    """A PostgreSQL settings file and what it includes: nothing may run a command, load a library,
    or reach outside pgdata (includes are followed, as PostgreSQL follows them)."""
    if kinds.get(name) is not False:
        return  # absent: PostgreSQL uses its defaults (or, for a missing include, refuses to start)
    if depth > MAX_INCLUDE_DEPTH:
        raise BadBackup(f"{name} nests includes deeper than PostgreSQL allows")
    for line in re.split(r"[\r\n]", read(name).decode("latin-1")):
        setting = parse_setting(line)
        if setting is None:
            continue
        key, value = setting
        if key in INCLUDES:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), value))
            if value.startswith("/") or not target.startswith("home/pgdata/"):
                raise BadBackup(f"{name} has {key} '{value}', outside the database folder")
            included = [target]
            if key == "include_dir":
                included = sorted(
                    entry
                    for entry, is_dir in kinds.items()
                    if not is_dir
                    and posixpath.dirname(entry) == target
                    and entry.endswith(".conf")
                    and not posixpath.basename(entry).startswith(".")
                )
            for entry in included:
                check_settings(entry, kinds, read, depth + 1)
        else:
            problem = setting_problem(key, value)
            if problem:
                raise BadBackup(f"{name} sets {key} ({problem})")


def check_home(kinds: dict[str, bool], read: Callable[[str], bytes], on_server: bool = False) -> None:
    """A complete TestGen home (config.env and a database) that PostgreSQL starts without
    running a command: no recovery or standby signal, no such setting. The database of a backup
    made on a server is its schema dump (restored by pg_restore into the server, in one transaction)."""
    if kinds.get("home") is False:
        raise BadBackup("its home is a file, not TestGen's home folder")
    if kinds.get("home/config.env") is not False:
        raise BadBackup("it is not a complete TestGen home (it has no home/config.env)")
    if on_server:
        if kinds.get("schema.dump") is not False:
            raise BadBackup("its manifest says its data is on a server, but it has no schema.dump")
        if "home/pgdata" in kinds:
            raise BadBackup("its manifest says its data is on a server, but it holds an embedded database")
        return
    if kinds.get("home/pgdata") is not True or kinds.get("home/pgdata/PG_VERSION") is not False:
        raise BadBackup("it is not a complete TestGen home (it has no database: home/pgdata/PG_VERSION)")
    for signal_file in SIGNAL_FILES:
        if signal_file in kinds:
            raise BadBackup(f"it holds {signal_file}, which makes PostgreSQL run recovery commands")
    for name in ("home/pgdata/postgresql.conf", "home/pgdata/postgresql.auto.conf"):
        check_settings(name, kinds, read)


def read_small(handle: IO[bytes] | None, name: str, size: int, limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The manifest, a settings file or credentials.txt, read only when it is no larger than
    such a file ever is (a 1 GB manifest once took 2 GB of memory)."""
    if handle is None:
        raise BadBackup(f"{name} is not a file")
    with handle:
        if size > limit:
            raise BadBackup(
                f"{name} is {size_text(size)}, more than the {limit // 1024} KB such a file can be"
            )
        return handle.read(limit)


def read_backup(handle: BinaryIO, path: Path, installed_version: str, room: Path) -> dict[str, Any]:
    """The manifest of a backup this installer can restore over `installed_version` into `room`;
    otherwise a clear refusal (missing, corrupt, foreign, incomplete, hostile, too large for the
    disk or out of proportion, or from a newer TestGen). Reads `handle` once, from its headers."""
    import tarfile
    import zlib

    kinds: dict[str, bool] = {}
    manifest: Any = None
    try:
        tally = Tally(os.fstat(handle.fileno()).st_size)
        handle.seek(0)
        with tarfile.open(fileobj=handle, mode="r:gz") as archive:
            for member in archive:  # each header is checked before its data is read
                check_entry(member, kinds)
                if member.name == "manifest.json":
                    data = read_small(
                        archive.extractfile(member), "its manifest", member.size, MAX_MANIFEST_BYTES
                    )
                    with contextlib.suppress(ValueError):
                        manifest = json.loads(data)
                tally.count(member)
            if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
                raise BadBackup("it is not a dk-installer backup")
            if manifest.get("format_version") != BACKUP_FORMAT_VERSION:
                raise BadBackup("it is a backup this installer version does not know")
            backup_version = str(manifest.get("testgen_version"))
            if is_newer(backup_version, installed_version):
                raise refusal(
                    path,
                    f"it comes from TestGen {backup_version}, newer than the installed {installed_version}; "
                    f"upgrade first (`upgrade --version {backup_version}`)",
                    ErrorCode.VERSION_CONFLICT,
                )

            def read(name: str) -> bytes:
                member = archive.getmember(name)
                return read_small(archive.extractfile(member), name, member.size)

            check_home(kinds, read, manifest.get("data") == "server")
    except BadBackup as exc:
        raise refusal(path, exc.why) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        raise refusal(path, "it is not a readable .tar.gz (damaged or cut short?)") from None
    # Each file takes at most one more disk block than its size; the margin is for PostgreSQL's
    # first start on the restored data.
    needed = tally.unpacked + tally.entries * 4096 + DISK_MARGIN_BYTES
    free = shutil.disk_usage(room).free
    if needed > free:
        raise refusal(
            path, f"it needs {size_text(needed)} unpacked, and only {size_text(free)} is free under {room}"
        )
    return manifest


def unpack(handle: BinaryIO, staging: Path) -> dict[str, bool]:
    """Regular files (0600, 0700 when the owner could run them) and folders (0700), owned by
    this user, written from `handle` below `staging` (a folder of ours, 0700): each entry is
    checked again as it is written, so what is unpacked is what passed, whatever the file did
    since. No link is ever made, so no entry can lead outside."""
    import tarfile

    kinds: dict[str, bool] = {}
    tally = Tally(os.fstat(handle.fileno()).st_size)
    handle.seek(0)
    with tarfile.open(fileobj=handle, mode="r:gz") as archive:
        for member in archive:
            check_entry(member, kinds)
            tally.count(member)
            parts = member.name.split("/")
            for depth in range(1, len(parts) + (1 if member.isdir() else 0)):
                folder = staging.joinpath(*parts[:depth])
                if not folder.is_dir():
                    folder.mkdir(mode=0o700)
                    folder.chmod(0o700)  # whatever the umask
            source = archive.extractfile(member) if not member.isdir() else None
            if source is None:
                continue
            mode = 0o700 if member.mode & 0o100 else 0o600
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(staging.joinpath(*parts), flags, mode)
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as target, source:
                shutil.copyfileobj(source, target, 1024**2)
    return kinds


def give_database_to_its_user(current: Path, restored: Path) -> None:
    """As root, pgserver runs PostgreSQL as its own `pgserver` user, and PostgreSQL refuses a
    database it does not own: the restored pgdata goes to the owner of the current one (the rest
    of TestGen's home stays root's, as in the current home). Others own their files already."""
    if os.geteuid() != 0:
        return
    try:
        owner = os.lstat(current)
    except FileNotFoundError:
        return
    os.lchown(restored, owner.st_uid, owner.st_gid)
    for folder, dirs, files in os.walk(restored):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), owner.st_uid, owner.st_gid)


class UnpackBackup(Step):
    """Unpacks the backup, from the handle read_backup checked, beside the current data; the
    unpacked home is checked again before TestGen is stopped."""

    name = "unpack_backup"
    title = "Unpack the backup"

    def __init__(self, source: Path, handle: BinaryIO) -> None:
        self.source = source
        self.handle = handle

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        import tarfile
        import zlib

        staging = ctx.paths.restore_staging
        remove_tree(staging)
        staging.mkdir(parents=True, mode=0o700)
        staging.chmod(0o700)
        progress.update(f"unpacking {self.source}")

        def read(name: str) -> bytes:
            path = staging / name
            return read_small(path.open("rb"), name, path.stat().st_size)

        try:
            kinds = unpack(self.handle, staging)
            manifest = json.loads(read("manifest.json"))
            check_home(kinds, read, isinstance(manifest, dict) and manifest.get("data") == "server")
            if kinds.get("credentials.txt") is False:
                read("credentials.txt")  # bounded: parse_credentials reads it whole
        except BadBackup as exc:
            raise refusal(self.source, exc.why) from None
        except (tarfile.TarError, EOFError, zlib.error):
            raise refusal(self.source, "it is not a readable .tar.gz (damaged or cut short?)") from None
        if (staging / "home" / "pgdata").exists():
            give_database_to_its_user(ctx.paths.pgdata, staging / "home" / "pgdata")
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
