"""bundle and install --bundle: a bundle made from a stand-in install installs on a fresh machine
with every index and proxy pointed at a dead port, run by a bare Python 3.9 (so the runtime too
comes from the bundle); a tampered bundle is refused before anything is written."""

from __future__ import annotations

import fcntl
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import INSTALLER, Sandbox, bare_python, sandbox_at
from managed_python import machine_without_python, python_downloads

pytestmark = pytest.mark.single_file  # end-to-end: the downloaded file, as users run it

DEAD = "http://127.0.0.1:9"
OFFLINE = {
    "PIP_INDEX_URL": f"{DEAD}/simple",
    "UV_INDEX_URL": f"{DEAD}/simple",
    "PIP_FIND_LINKS": None,
    "PIP_CONFIG_FILE": "/dev/null",
    "HTTPS_PROXY": DEAD,
    "HTTP_PROXY": DEAD,
    "UV_PYTHON_INSTALL_MIRROR": DEAD,
    "UV_OFFLINE": None,
}


@pytest.fixture(scope="session")
def made_bundle(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, uv_cache: Path
) -> tuple[Path, float]:
    """One bundle for the run, made by the first test that needs it (the xdist workers share it
    under a lock; the tests only read it): a stand-in install and `bundle` cost ~15 s of CPU."""
    folder = uv_cache.parent / "made-bundle"
    folder.mkdir(exist_ok=True)
    output = folder / "out" / "testgen-bundle.tar.gz"
    made_s = folder / "made-seconds"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made_s.exists():
            maker = folder / "maker"
            maker.mkdir()
            for sandbox in sandbox_at(maker, wheelhouse, uv_cache, single_file=True):
                installed = sandbox.install("--no-demo", "--no-start", "--version", "5.1.0")
                assert installed.returncode == 0, installed.stdout + installed.stderr
                started = time.monotonic()
                made = sandbox.run(
                    "bundle", "--output", str(output), "--find-links", str(sandbox.wheelhouse), timeout=900
                )
                assert made.returncode == 0, made.stdout + made.stderr
                made_s.write_text(str(time.monotonic() - started))
    return output, float(made_s.read_text())


def members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]


def install_from_bundle(
    target: Sandbox, bundle: Path, env: dict[str, str | None], *extra: str
) -> subprocess.CompletedProcess[str]:
    """`install --bundle` the way a user on the target runs it: the file, by a bare Python 3.9, and
    no --find-links (the wheels come from the bundle)."""
    args = target.install_args("--no-demo", *extra, "--bundle", str(bundle))[3:]
    return subprocess.run(
        [bare_python(), str(INSTALLER), "install", *args],
        env=target.merged_env(env),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_bundle_installs_with_no_network(
    made_bundle: tuple[Path, float], tmp_path: Path, wheelhouse: Path, uv_cache: Path
) -> None:
    bundle, made_s = made_bundle
    files = members(bundle)
    manifest = json.loads(files["manifest.json"])
    assert next(iter(files)) == "manifest.json"
    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    assert files["dk_installer.py"] == INSTALLER.read_bytes()
    assert "wheels/testgen/dataops_testgen-5.1.0-py3-none-any.whl" in files
    assert any(name.startswith("wheels/runtime/click-8.1.8") for name in files)
    assert (manifest["testgen_version"], manifest["python_version"]) == ("5.1.0", "3.11")
    target_root = tmp_path / "target"
    target_root.mkdir()
    for target in sandbox_at(target_root, wheelhouse, uv_cache, single_file=True):
        started = time.monotonic()
        # --no-start: with HTTP_PROXY at a dead port and no NO_PROXY, the start's health probes
        # to 127.0.0.1 go through that proxy too (urllib), a separate bug.
        result = install_from_bundle(target, bundle, OFFLINE, "--no-start")
        install_s = time.monotonic() - started
        assert result.returncode == 0, result.stdout + result.stderr
        assert target.state()["product_version"] == "5.1.0"
        assert list((target.home / "runtime").glob("lib/python3.9/site-packages/click"))
        assert not (target.home / "bundle").exists()
        size = bundle.stat().st_size / 1024**2
        print(f"bundle {size:.1f} MB, made in {made_s:.1f}s, installed in {install_s:.1f}s")


def tampered(bundle: Path, tmp_path: Path) -> Path:
    """The same manifest, one wheel's bytes changed."""
    out = tmp_path / "tampered.tar.gz"
    with tarfile.open(bundle) as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.startswith("wheels/runtime/click"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return out


def test_a_tampered_bundle_is_refused_before_anything_is_written(
    made_bundle: tuple[Path, float], tmp_path: Path, wheelhouse: Path, uv_cache: Path
) -> None:
    bad = tampered(made_bundle[0], tmp_path)
    target_root = tmp_path / "target"
    target_root.mkdir()
    for target in sandbox_at(target_root, wheelhouse, uv_cache, single_file=True):
        for python in (bare_python(), None):  # the bootstrap checks it, and so does the package
            argv = [python or __import__("sys").executable, str(INSTALLER), "install", "--bundle", str(bad)]
            result = subprocess.run(
                argv, env=target.merged_env(OFFLINE), capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 1, result.stdout + result.stderr
            assert (
                "does not match its checksum" in result.stderr and "Nothing was installed." in result.stderr
            )
            assert not (target.home / "runtime").exists() and not (target.home / "bundle").exists()
            assert not (target.home / "testgen").exists()


def test_a_target_without_the_bundles_python_is_told_what_it_lacks(
    made_bundle: tuple[Path, float], tmp_path: Path, wheelhouse: Path, uv_cache: Path
) -> None:
    """The bundle carries no Python (uv manages none on the bundling machine here): a target
    whose Python is not the one TestGen's wheels are for is told so plainly, and nothing is
    installed."""
    bundle, _ = made_bundle
    root = tmp_path / "no-python-target"
    root.mkdir()
    for target in sandbox_at(root, wheelhouse, uv_cache, single_file=True):
        result = target.run(
            "install", "--bundle", str(bundle), "--python", bare_python(), "--no-browser", env=OFFLINE
        )
        assert result.returncode == 3, result.stdout + result.stderr
        assert "wheels are for Python 3.11" in result.stderr and "lacks it" in result.stderr
        assert "The bundle carries no Python" in result.stderr
        assert not (target.home / "testgen").exists()


def test_a_bundle_carries_the_python_uv_manages_to_a_machine_without_one(
    sandbox: Sandbox, tmp_path: Path, wheelhouse: Path, uv_cache: Path
) -> None:
    """The bundling machine has no Python 3.11 but the one its uv manages (uv installed it), and
    TestGen runs on that one: the bundle carries it, and a target without any Python 3.11 gets it
    installed by uv from the bundle alone, inside the installer's folder, and runs TestGen on it."""
    uv = str(Path(sys.executable).parent / "uv")
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    downloads = python_downloads(tmp_path / "python-downloads", minor)
    version = ".".join(map(str, sys.version_info[:3]))
    managed = subprocess.run(
        [uv, "python", "install", version],
        env=sandbox.merged_env(
            {"UV_PYTHON_DOWNLOADS_JSON_URL": str(downloads), "UV_PYTHON_INSTALL_BIN": "0"}
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert managed.returncode == 0, managed.stderr
    user_pythons = sandbox.user_home / ".local/share/uv/python"
    key = f"cpython-{version}-linux-x86_64-gnu"
    assert (user_pythons / key).is_dir()
    installed = sandbox.install(
        "--no-demo", "--no-start", "--version", "5.1.0", env=machine_without_python(sandbox)
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert str(user_pythons) in (sandbox.home / "testgen/venv/pyvenv.cfg").read_text(), "on uv's Python"
    bundle = sandbox.root / "out" / "testgen-bundle.tar.gz"
    made = sandbox.run(
        "bundle", "--output", str(bundle), "--find-links", str(sandbox.wheelhouse), timeout=900
    )
    assert made.returncode == 0, made.stdout + made.stderr
    manifest = json.loads(members(bundle)["manifest.json"])
    assert manifest["python"] == {"file": f"python/{key}.tar.gz", "key": key, "version": version}
    print(f"bundle with its Python: {bundle.stat().st_size / 1024**2:.1f} MB")

    target_root = tmp_path / "target"
    target_root.mkdir()
    for target in sandbox_at(target_root, wheelhouse, uv_cache, single_file=True):
        offline = {**OFFLINE, **machine_without_python(target)}
        started = time.monotonic()
        result = install_from_bundle(target, bundle, offline)
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"installed with the bundle's Python in {time.monotonic() - started:.1f}s")
        assert f"OK      Install Python {version} from the bundle" in result.stdout
        assert "'admin' logged in" in result.stdout
        home = (target.home / "testgen/venv/pyvenv.cfg").read_text()
        assert str(target.home / "pythons") in home, home
        # uv links no python3.11 into ~/.local/bin, where only the launcher goes.
        assert [path.name for path in (target.user_home / ".local/bin").iterdir()] == ["dk-installer"]
        assert not (target.user_home / ".local/share").exists()
        assert not (target.home / "bundle").exists()
        removed = target.run("uninstall", "--yes", env=offline)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert not (target.home / "pythons").exists()
