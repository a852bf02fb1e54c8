"""`backup` and `restore` (issue 11), against the stand-in TestGen: a consistent copy while TestGen
runs, a restore that keeps the current data until the restored data runs, every refusal, and
Ctrl+C / SIGKILL in the middle."""

from __future__ import annotations

import io
import json
import signal
import tarfile
import time
from pathlib import Path

import pytest
from conftest import Sandbox, wait_for_line


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
