"""`backup` and `restore` (issue 11), against the stand-in TestGen: a consistent copy while TestGen
runs, a restore that keeps the current data until the restored data runs, every refusal, and
Ctrl+C / SIGKILL in the middle. Issue 15 item 4: hostile archives (a table of crafted ones, each
refused before TestGen stops), the file swapped after the checks, data-only unpacking."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, sandbox_at, wait_for_line

from dk_installer.errors import InstallerError
from dk_installer.steps.backup import BadBackup, check_settings, read_backup


def installed(sandbox: Sandbox, *extra: str) -> None:
    done = sandbox.install("--no-demo", "--version", "5.0.0", *extra)
    assert done.returncode == 0, done.stdout + done.stderr


def marker(sandbox: Sandbox) -> Path:
    return sandbox.home / "testgen/home/pgdata/marker"


def make_backup(sandbox: Sandbox, target: Path) -> None:
    made = sandbox.run("backup", "--output", str(target))
    assert made.returncode == 0, made.stdout + made.stderr


def test_backup_while_running_is_complete_private_and_leaves_testgen_running(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    installed(sandbox)
    target = tmp_path / "testgen.tar.gz"
    made = sandbox.run("backup", "--output", str(target))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "OK      Stop TestGen" in made.stdout and "OK      Start TestGen again" in made.stdout
    # TestGen runs again before the archive is compressed: it is down only for the copy.
    assert made.stdout.index("Start TestGen again") < made.stdout.index("Write the backup")
    assert target.stat().st_mode & 0o777 == 0o600
    assert sandbox.status()["health"] == {"ui": True, "api": True}
    with tarfile.open(target) as archive:
        names = archive.getnames()
        manifest = json.loads(archive.extractfile("manifest.json").read())
        config = archive.extractfile("home/config.env").read().decode()
    assert manifest["format"] == "dk-installer-backup" and manifest["testgen_version"] == "5.0.0"
    assert manifest["postgres_major"] == "16"
    assert "home/pgdata/users.json" in names and "credentials.txt" in names
    assert "TG_DECRYPT_PASSWORD=" in config and "TG_JWT_HASHING_KEY=" in config
    assert sandbox.password() not in made.stdout + made.stderr
    default = sandbox.run("backup")
    assert default.returncode == 0
    assert [p.name.startswith("testgen-5.0.0-") for p in (sandbox.home / "backups").iterdir()] == [True]


def test_restore_brings_the_data_back_and_testgen_runs_on_it(sandbox: Sandbox, tmp_path: Path) -> None:
    installed(sandbox)
    target = tmp_path / "testgen.tar.gz"
    make_backup(sandbox, target)
    marker(sandbox).write_text("made after the backup")
    restored = sandbox.run("restore", str(target), "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert not marker(sandbox).exists()
    assert "'admin' logged in" in restored.stdout
    # Data only: the archive's modes are not kept (files 0600, folders 0700, no special bits).
    with tarfile.open(target) as archive:
        names = [name for name in archive.getnames() if name.startswith("home")]
    assert "home/pgdata/users.json" in names
    for name in names:
        mode = (sandbox.home / "testgen" / name).lstat().st_mode
        assert stat.S_IMODE(mode) == (0o700 if stat.S_ISDIR(mode) else 0o600), (name, oct(mode))
    assert sandbox.status()["health"] == {"ui": True, "api": True}
    assert not (sandbox.home / "testgen/home.backup").exists()
    assert not (sandbox.home / "testgen/home.restoring").exists()


def foreign_archive(path: Path) -> None:
    with tarfile.open(path, "w:gz") as archive:
        data = b"hello"
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def newer_archive(path: Path, source: Path) -> None:
    with tarfile.open(source) as old, tarfile.open(path, "w:gz") as new:
        for member in old.getmembers():
            if member.name == "manifest.json":
                manifest = json.loads(old.extractfile(member).read())
                manifest["testgen_version"] = "99.0.0"
                data = json.dumps(manifest).encode()
                member.size = len(data)
                new.addfile(member, io.BytesIO(data))
            else:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)


@pytest.mark.parametrize(
    "kind, complaint, code",
    [
        ("missing", "there is no such file", "backup_invalid"),
        ("corrupt", "not a readable .tar.gz", "backup_invalid"),
        ("foreign", "not a dk-installer backup", "backup_invalid"),
        ("newer", "newer than the installed 5.0.0", "version_conflict"),
    ],
)
def test_restore_refuses_what_it_cannot_use_and_changes_nothing(
    sandbox: Sandbox, tmp_path: Path, kind: str, complaint: str, code: str
) -> None:
    installed(sandbox)
    good = tmp_path / "good.tar.gz"
    make_backup(sandbox, good)
    bad = tmp_path / "bad.tar.gz"
    if kind == "corrupt":
        bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    elif kind == "foreign":
        foreign_archive(bad)
    elif kind == "newer":
        newer_archive(bad, good)
    marker(sandbox).write_text("current data")
    debug = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    refused = sandbox.run("restore", str(bad), "--yes", env=debug)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert complaint in refused.stderr and "Nothing was changed" in refused.stderr
    event = json.loads(refused.stderr.split("analytics debug (not sent): ")[1].splitlines()[0])
    assert event["properties"]["error_code"] == code and event["properties"]["action"] == "restore"
    assert marker(sandbox).read_text() == "current data"
    assert sandbox.status()["health"] == {"ui": True, "api": True}


def test_restore_asks_first(sandbox: Sandbox, tmp_path: Path) -> None:
    installed(sandbox, "--no-start")
    result = sandbox.run("restore", str(tmp_path / "any.tar.gz"))
    assert result.returncode == 2 and "--yes" in result.stderr


@pytest.mark.parametrize("step", ["snapshot_data", "restart", "write_backup"])
def test_ctrl_c_during_backup_loses_nothing(sandbox: Sandbox, tmp_path: Path, step: str) -> None:
    installed(sandbox)
    target = tmp_path / "testgen.tar.gz"
    process = sandbox.popen("backup", "--output", str(target), env={"DK_INSTALLER_FAILPOINT": step})
    wait_for_line(process, f"failpoint {step}")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert list(tmp_path.glob(".testgen.tar.gz.*")) == []
    assert not (sandbox.home / "testgen/home.snapshot").exists()
    assert sandbox.status()["health"] == {"ui": True, "api": True}, "TestGen runs again as before"


@pytest.mark.parametrize(
    "step", ["unpack_backup", "swap_home", "upgrade_database", "restart", "verify_login"]
)
def test_ctrl_c_during_restore_keeps_the_current_data(sandbox: Sandbox, tmp_path: Path, step: str) -> None:
    installed(sandbox)
    target = tmp_path / "testgen.tar.gz"
    make_backup(sandbox, target)
    marker(sandbox).write_text("current data")
    process = sandbox.popen("restore", str(target), "--yes", env={"DK_INSTALLER_FAILPOINT": step})
    wait_for_line(process, f"failpoint {step}")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert marker(sandbox).read_text() == "current data"
    assert not (sandbox.home / "testgen/home.restoring").exists()
    assert not (sandbox.home / "testgen/home.backup").exists()
    assert sandbox.status()["health"] == {"ui": True, "api": True}


def test_sigkill_during_restore_then_a_plain_rerun_restores(sandbox: Sandbox, tmp_path: Path) -> None:
    installed(sandbox)
    target = tmp_path / "testgen.tar.gz"
    make_backup(sandbox, target)
    marker(sandbox).write_text("current data")
    process = sandbox.popen(
        "restore", str(target), "--yes", env={"DK_INSTALLER_FAILPOINT": "upgrade_database"}
    )
    wait_for_line(process, "failpoint upgrade_database")
    process.kill()
    process.communicate(timeout=60)
    started = time.monotonic()
    again = sandbox.run("restore", str(target), "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "An interrupted `restore` was found" in again.stderr
    assert time.monotonic() - started < 120
    assert not marker(sandbox).exists()
    assert sandbox.status()["health"] == {"ui": True, "api": True}


def test_an_older_version_is_refused_without_its_own_data(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 15, item 12: TestGen's migrations go one way; going back takes that version's backup."""
    links = ("--find-links", str(sandbox.wheelhouse))
    assert sandbox.install("--no-demo", "--version", "5.0.0").returncode == 0
    older_data = tmp_path / "made-with-5.0.0.tar.gz"
    assert sandbox.run("backup", "--output", str(older_data)).returncode == 0
    assert sandbox.run("upgrade", *links).returncode == 0
    venvs = sorted((sandbox.home / "testgen/venvs").iterdir())

    for version in ("5.0.0", "<5.1"):  # exact: refused at once; a range: once it resolves
        refused = sandbox.run("upgrade", "--version", version, *links)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "older than the installed 5.1.0" in refused.stderr and "--from-backup" in refused.stderr
        assert sandbox.state()["product_version"] == "5.1.0"
        assert sorted((sandbox.home / "testgen/venvs").iterdir()) == venvs
        assert sandbox.status()["health"] == {"ui": True, "api": True}

    back = sandbox.run("upgrade", "--from-backup", str(older_data), *links)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "taken back from 5.1.0 to 5.0.0" in back.stdout and "'admin' logged in" in back.stdout
    assert sandbox.state()["product_version"] == "5.0.0"
    assert (sandbox.home / "testgen/home/schema-version").read_text().strip() == "5.0.0"
    assert not (sandbox.home / "testgen/home.backup").exists()


Entry = tuple[tarfile.TarInfo, bytes]


def entries_of(archive_path: Path) -> list[Entry]:
    with tarfile.open(archive_path) as archive:
        return [
            (member, archive.extractfile(member).read() if member.isfile() else b"")
            for member in archive.getmembers()
        ]


def entry(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, mode: int = 0o600, link: str = ""
) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def write_archive(path: Path, entries: list[Entry]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)


def without(entries: list[Entry], prefix: str) -> list[Entry]:
    return [(i, d) for i, d in entries if i.name != prefix and not i.name.startswith(prefix + "/")]


def settings(text: str) -> list[Entry]:
    return [entry("home/pgdata/postgresql.conf", text.encode())]


def zip_bomb(path: Path, entries: list[Entry]) -> None:
    """A valid backup followed by a 2 GiB file of zeros: gzip members, each 1 MiB of zeros
    compressed once, so the archive is some 2 MB."""
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
        bomb = tarfile.TarInfo("home/pgdata/base/zeros")
        bomb.size = 2 * 1024**3
        header = bomb.tobuf(archive.format, archive.encoding, archive.errors)
        start = archive.offset  # before the end-of-archive blocks that close() adds
    zeros = gzip.compress(bytes(1024**2), 9)
    with open(path, "wb") as out:
        out.write(gzip.compress(body.getvalue()[:start] + header))
        for _ in range(2048):
            out.write(zeros)
        out.write(gzip.compress(bytes(1024)))


# Each crafted archive: a valid backup changed by `craft(entries, outside)` (`outside`: a folder
# the attack would write to), and the words of its refusal.
Craft = Callable[[list[Entry], Path], list[Entry]]
HOSTILE: dict[str, tuple[Craft, str]] = {
    "restore_command_and_recovery_signal": (
        lambda e, out: [
            *e,
            entry("home/pgdata/postgresql.auto.conf", f"restore_command = 'touch {out}/pwned'\n".encode()),
            entry("home/pgdata/recovery.signal"),
        ],
        "recovery.signal, which makes PostgreSQL run recovery commands",
    ),
    "restore_command": (
        lambda e, out: [*e, entry("home/pgdata/postgresql.auto.conf", b"restore_command = 'id'\n")],
        "postgresql.auto.conf sets restore_command (PostgreSQL would run a command)",
    ),
    "standby_signal": (lambda e, out: [*e, entry("home/pgdata/standby.signal")], "standby.signal"),
    "preload_library": (
        lambda e, out: e + settings(f"shared_preload_libraries = '{out}/evil.so'\n"),
        "sets shared_preload_libraries (PostgreSQL would load a library)",
    ),
    "include_outside": (
        lambda e, out: e + settings(f"include_if_exists = '{out}/evil.conf'\n"),
        "outside the database folder",
    ),
    "included_command": (
        lambda e, out: (
            e
            + settings("include_dir 'conf.d'   # more settings\n")
            + [entry("home/pgdata/conf.d/archive.conf", f"ARCHIVE_COMMAND='touch {out}/pwned'\n".encode())]
        ),
        "conf.d/archive.conf sets archive_command",
    ),
    "setuid_file": (
        lambda e, out: [*e, entry("home/pgdata/tool", b"#!/bin/sh\n", mode=0o4755)],
        "home/pgdata/tool has setuid",
    ),
    "device": (
        lambda e, out: [*e, entry("home/pgdata/null", kind=tarfile.CHRTYPE)],
        "a device (home/pgdata/null)",
    ),
    "fifo_entry": (lambda e, out: [*e, entry("home/pgdata/pipe", kind=tarfile.FIFOTYPE)], "a FIFO"),
    "symlink": (
        lambda e, out: [*e, entry("home/pgdata/link", kind=tarfile.SYMTYPE, link=str(out))],
        "a symbolic link",
    ),
    "hardlink": (
        lambda e, out: [*e, entry("home/pgdata/link", kind=tarfile.LNKTYPE, link="home/config.env")],
        "a hard link",
    ),
    "absolute_path": (
        lambda e, out: [*e, entry(f"{out}/pwned", b"x")],
        "named outside the backup",
    ),
    "dotdot": (
        lambda e, out: [*e, entry("home/../../../pwned", b"x")],
        "named outside the backup",
    ),
    "home_is_a_file": (
        lambda e, out: [*without(e, "home"), entry("home", b"x"), entry("home/config.env", b"A=1\n")],
        "home is a file",
    ),
    "no_database": (lambda e, out: without(e, "home/pgdata"), "it has no database"),
    "no_config": (lambda e, out: without(e, "home/config.env"), "it has no home/config.env"),
    "oversized_manifest": (
        lambda e, out: [
            (i, d)
            if i.name != "manifest.json"
            else entry("manifest.json", d[:-1] + b', "padding": "' + b" " * 1024**2 + b'"}')
            for i, d in e
        ],
        "its manifest is 1.0 MB, more than the 64 KB",
    ),
    "zip_bomb": (lambda e, out: e, "over 100 times its compressed size"),
    "fifo_source": (lambda e, out: e, "it is not a regular file"),
}


@pytest.fixture(scope="module")
def running_install(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, uv_cache: Path
) -> Iterator[tuple[Sandbox, Path]]:
    """One running install and a good backup of it, shared by the hostile-archive cases: each is
    refused before anything changes, and each checks that nothing did (data, files, health)."""
    root = tmp_path_factory.mktemp("hostile-archives")
    for box in sandbox_at(root, wheelhouse, uv_cache):
        installed(box)
        good = root / "good.tar.gz"
        make_backup(box, good)
        yield box, good


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_restore_refuses_a_hostile_archive_before_stopping_testgen(
    running_install: tuple[Sandbox, Path], tmp_path: Path, kind: str
) -> None:
    sandbox, good = running_install
    craft, complaint = HOSTILE[kind]
    outside = tmp_path / "outside"
    outside.mkdir()
    bad = tmp_path / "bad.tar.gz"
    if kind == "zip_bomb":
        zip_bomb(bad, entries_of(good))
        assert bad.stat().st_size < 3 * 1024**2
    elif kind == "fifo_source":
        os.mkfifo(bad)
    else:
        write_archive(bad, craft(entries_of(good), outside))
    marker(sandbox).write_text(f"current data before {kind}")
    started = time.monotonic()
    refused = sandbox.run("restore", str(bad), "--yes", timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert complaint in refused.stderr and "Nothing was changed" in refused.stderr, refused.stderr
    assert "Unexpected" not in refused.stderr and "Stop TestGen" not in refused.stdout
    assert time.monotonic() - started < 60
    assert marker(sandbox).read_text() == f"current data before {kind}"
    assert list(outside.iterdir()) == []
    assert not list(sandbox.root.rglob("pwned")) and not (tmp_path / "pwned").exists()
    assert not (sandbox.home / "testgen/home.restoring").exists()
    assert sandbox.status()["health"] == {"ui": True, "api": True}


RACE = """
import os, sys
import dk_installer.actions.data as data

real_read_backup = data.read_backup

def read_then_change(*args, **kwargs):
    manifest = real_read_backup(*args, **kwargs)
    hostile, source = os.environ["RACE_HOSTILE"], os.environ["RACE_SOURCE"]
    if os.environ["RACE_HOW"] == "swap":
        os.replace(hostile, source)
    else:
        with open(source, "r+b") as same_file:
            same_file.write(open(hostile, "rb").read())
            same_file.truncate()
    return manifest

data.read_backup = read_then_change
sys.argv = ["dk_installer.py", *sys.argv[1:]]
from dk_installer.cli import main
main()
"""


@pytest.mark.parametrize("how", ["swap", "rewrite"])
def test_a_backup_changed_after_the_checks_is_never_trusted(
    sandbox: Sandbox, tmp_path: Path, how: str
) -> None:
    """Right after read_backup accepted the file (the installer's own code, run with read_backup
    wrapped), another file takes its path (`swap`: never read, the checked one is restored) or
    its bytes are rewritten (`rewrite`: what is unpacked is checked again, refused before TestGen
    stops). The hostile archive writes outside and sets a restore_command."""
    installed(sandbox)
    good = tmp_path / "good.tar.gz"
    make_backup(sandbox, good)
    hostile = tmp_path / "hostile.tar.gz"
    write_archive(hostile, HOSTILE["restore_command_and_recovery_signal"][0](entries_of(good), tmp_path))
    if how == "swap":
        write_archive(hostile, [*entries_of(good), entry(f"{tmp_path}/pwned", b"written outside")])
    marker(sandbox).write_text("current data")
    env = sandbox.merged_env({"RACE_HOSTILE": str(hostile), "RACE_SOURCE": str(good), "RACE_HOW": how})
    restored = subprocess.run(
        [sys.executable, "-c", RACE, "restore", str(good), "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,  # not the clone, whose dk_installer.py would shadow the package
    )
    assert not (tmp_path / "pwned").exists()
    if how == "swap":
        assert not hostile.exists(), restored.stdout + restored.stderr
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert not marker(sandbox).exists()
    else:
        assert good.read_bytes() == hostile.read_bytes()
        assert restored.returncode == 1, restored.stdout + restored.stderr
        assert "recovery.signal" in restored.stderr and "Stop TestGen" not in restored.stdout
        assert marker(sandbox).read_text() == "current data"
        assert not (sandbox.home / "testgen/home.restoring").exists()
    assert sandbox.status()["health"] == {"ui": True, "api": True}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_restore_as_root_gives_the_database_to_the_user_of_the_current_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """As root, pgserver runs PostgreSQL as its `pgserver` user, which owns pgdata; a backup
    made elsewhere (here: before pgdata changed owner) must come back owned the same way."""
    installed(sandbox)
    target = tmp_path / "testgen.tar.gz"
    make_backup(sandbox, target)
    pgdata = sandbox.home / "testgen/home/pgdata"
    nobody = 65534
    for path in [pgdata, *pgdata.rglob("*")]:
        os.lchown(path, nobody, nobody)
    restored = sandbox.run("restore", str(target), "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    with tarfile.open(target) as archive:
        unpacked = [sandbox.home / "testgen" / n for n in archive.getnames() if n.startswith("home/pgdata")]
    assert len(unpacked) > 2
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in unpacked} == {(nobody, nobody)}
    assert (pgdata.parent / "config.env").stat().st_uid == 0


def minimal_backup(path: Path, *extra: Entry) -> None:
    manifest = {"format": "dk-installer-backup", "format_version": 1, "testgen_version": "5.0.0"}
    write_archive(
        path,
        [
            entry("manifest.json", json.dumps(manifest).encode()),
            entry("home", kind=tarfile.DIRTYPE, mode=0o755),
            entry("home/config.env", b"A=1\n"),
            entry("home/pgdata/PG_VERSION", b"16\n"),
            *extra,
        ],
    )


def test_read_backup_refuses_an_archive_larger_than_the_free_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "backup.tar.gz"
    minimal_backup(source, entry("home/pgdata/base", bytes(4 * 1024**2)))
    with open(source, "rb") as handle:
        assert read_backup(handle, source, "5.0.0", tmp_path)["testgen_version"] == "5.0.0"
        monkeypatch.setattr("shutil.disk_usage", lambda _: type("Usage", (), {"free": 200 * 1024**2}))
        with pytest.raises(InstallerError, match=r"needs 260\.\d MB unpacked, and only 200\.0 MB is free"):
            read_backup(handle, source, "5.0.0", tmp_path)


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("#restore_command = 'id'\nshared_preload_libraries = ''\ndynamic_library_path = '$libdir'\n", None),
        ("log_directory = 'log'\njit_provider = llvmjit\n", None),
        ("RESTORE_COMMAND 'id'\n", "sets restore_command"),
        ("\trestore_command=id# no spaces\n", "sets restore_command"),
        ("archive_command = 'it''s'\n", "sets archive_command"),
        ("ssl_passphrase_command = 'echo x'\r\n", "sets ssl_passphrase_command"),
        ("dynamic_library_path = '/tmp'\n", "sets dynamic_library_path"),
        ("jit_provider = '../../../tmp/evil'\n", "sets jit_provider"),
        ("data_directory = '/elsewhere'\n", "sets data_directory"),
        ("log_directory = '/home/user'\n", "sets log_directory"),
        ("log_filename = '../../.bashrc'\n", "sets log_filename"),
        ("include = 'sub/more.conf'\n", "sub/more.conf sets local_preload_libraries"),
        ("include 'sub/../../../config.env'\n", "outside the database folder"),
        ("include = 'postgresql.conf'\n", "nests includes deeper than PostgreSQL allows"),
    ],
)
def test_postgresql_settings_that_run_commands_are_found(text: str, complaint: str | None) -> None:
    files = {
        "home/pgdata/postgresql.conf": text.encode(),
        "home/pgdata/sub/more.conf": b"local_preload_libraries = 'evil'\n",
    }
    kinds = {"home": True, "home/pgdata": True, "home/pgdata/sub": True, **dict.fromkeys(files, False)}
    if complaint is None:
        check_settings("home/pgdata/postgresql.conf", kinds, files.__getitem__)
    else:
        with pytest.raises(BadBackup, match=complaint.replace("(", r"\(")):
            check_settings("home/pgdata/postgresql.conf", kinds, files.__getitem__)
