"""Section 2, paths and settings: where things live, the install receipt, the lock."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from dk_installer.config import (
    InstallerLock,
    InstallState,
    SavedChoices,
    Settings,
    json_value_fits,
    write_file_atomically,
)
from dk_installer.errors import InstallerError, StateCorrupt
from dk_installer.paths import Paths


def receipt(**changes: object) -> InstallState:
    state = InstallState(
        product_version="5.1.0",
        version_spec=">=5,<6",
        ui_port=8501,
        api_port=8530,
        package_engine="uv",
        python="/usr/bin/python3.11",
        python_version="3.11.7",
        venv="v1",
        installed_at="t",
        updated_at="t",
        demo_data=True,
    )
    return dataclasses.replace(state, **changes)


def test_default_locations_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DK_INSTALLER_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "conf"))
    paths = Paths.from_environment()
    assert paths.home == tmp_path / "data" / "dk-installer"
    assert paths.config == tmp_path / "conf" / "dk-installer"
    assert paths.venv == paths.home / "testgen" / "venv"
    assert paths.testgen_home == paths.home / "testgen" / "home"
    monkeypatch.setenv("DK_INSTALLER_HOME", str(tmp_path / "elsewhere"))
    assert Paths.from_environment().home == tmp_path / "elsewhere"


def test_state_round_trip_is_atomic_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    receipt().save(path)
    assert InstallState.load(path) == receipt()
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left
    assert InstallState.load(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    "content, complaint",
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"product_version": "5"}), "lacks"),
        (json.dumps({**dataclasses.asdict(receipt()), "ui_port": "8501"}), "'ui_port' should be int"),
        (json.dumps({**dataclasses.asdict(receipt()), "ui_port": 99999}), "out of range"),
        (json.dumps({**dataclasses.asdict(receipt()), "demo_data": 1}), "'demo_data' should be bool"),
        (json.dumps({**dataclasses.asdict(receipt()), "schema": 7}), "schema 7"),
    ],
)
def test_damaged_state_is_detected(tmp_path: Path, content: str, complaint: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateCorrupt, match=complaint):
        InstallState.load(path)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "secret.txt"
    write_file_atomically(path, "old", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_file_atomically(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.txt"]


@pytest.mark.parametrize(
    "annotation, value, fits",
    [
        ("int", 3, True),
        ("int", True, False),
        ("int", "3", False),
        ("int | None", None, True),
        ("int | None", 3, True),
        ("str | None", 3, False),
        ("bool", False, True),
        ("bool", 0, False),
    ],
)
def test_receipt_values_are_checked_against_their_annotations(
    annotation: str, value: object, fits: bool
) -> None:
    assert json_value_fits(annotation, value) is fits


def test_every_receipt_field_has_a_checkable_type() -> None:
    for field in dataclasses.fields(InstallState):
        json_value_fits(str(field.type), None)  # raises KeyError for a type the loader cannot check


def test_settings_are_read_once_from_the_environment() -> None:
    settings = Settings.from_environment(
        {
            "DK_INSTALLER_MIN_FREE_BYTES": "5",
            "DO_NOT_TRACK": "YES",
            "DK_INSTALLER_ANALYTICS": "off",
            "DK_INSTALLER_CONTEXT": "Not Valid!",
            "DK_INSTALLER_LAUNCHED_BY": "something-else",
            "GITLAB_CI": "true",
            "DK_INSTALLER_ANALYTICS_URL": "http://127.0.0.1:9/",
            "NO_COLOR": "",
        }
    )
    assert settings.min_free_bytes == 5 and settings.do_not_track and settings.analytics_opt_out
    assert settings.context is None and settings.launched_by == "direct"
    assert settings.ci and settings.ci_provider == "gitlab"
    assert settings.analytics_url == "http://127.0.0.1:9" and settings.no_color
    assert Settings.from_environment({}) == Settings()


def test_settings_tolerate_garbage_and_are_private(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("garbage")
    settings = SavedChoices(path)
    assert settings.get("analytics") is None
    settings.update(analytics="disabled", anonymous_id="x")
    settings.update(anonymous_id=None)
    assert json.loads(path.read_text()) == {"analytics": "disabled"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    first = InstallerLock(tmp_path / ".lock", "install")
    first.acquire()
    second = InstallerLock(tmp_path / ".lock", "start")
    with pytest.raises(InstallerError, match=r"install \(pid \d+\)") as refused:
        second.acquire()
    assert refused.value.code == "busy"
    first.release()
    second.acquire()
    second.release()
