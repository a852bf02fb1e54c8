"""bundle: one archive that installs this TestGen on a machine with no network (the installer and
its checksum, the runtime's wheels, TestGen's wheels for this platform, TestGen's Python when uv
manages it, and a manifest with the sha256 of every file); and what `install --bundle` does with
it first."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer import __version__
from dk_installer.actions.boundary import load_state
from dk_installer.bootstrap import (
    BUNDLE_DIR,
    BUNDLE_FORMAT,
    BUNDLE_MANIFEST,
    RUNTIME_REQUIREMENTS,
    BundleError,
    unpack_bundle,
    venv_bin,
)
from dk_installer.copies import single_file
from dk_installer.engine import PackageEngine, _probe_python, child_environment, find_uv
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.runner import run_command

if TYPE_CHECKING:
    from dk_installer.config import InstallOptions
    from dk_installer.steps.base import ActionContext

TESTGEN_REQUIREMENT = "dataops-testgen[standalone]"
# The bootstrap runs on any Python 3.9+: the runtime's wheels for each, so that the target's
# python3 builds the runtime whatever its version (most are pure Python; the rest differ by ABI).
RUNTIME_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
# How uv names the Pythons it manages (their folders and download keys): cpython-3.11.7-linux-x86_64-gnu.
MANAGED_PYTHON_KEY = re.compile(r"(cpython)-(\d+)\.(\d+)\.(\d+)-([a-z]+)-([a-z0-9_]+)-([a-z]+)")


def pins_for(python_version: str) -> list[str]:
    """The runtime's pins that apply on that Python (pip download reads markers for the Python
    running it, not for --python-version)."""
    from packaging.requirements import Requirement

    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    pins = []
    for pin in RUNTIME_REQUIREMENTS:
        marker = Requirement(pin).marker
        if marker is None or marker.evaluate(environment):
            pins.append(pin.split(";")[0].strip())
    return pins


def installer_file(ctx: ActionContext) -> Path:
    for candidate in (single_file(), ctx.settings.user_script, ctx.paths.installer_copy):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise InstallerError(
        "No dk_installer.py to put in the bundle: run `bundle` from the file, or save it with install.sh.",
        code=ErrorCode.NOT_INSTALLED,
    )


def managed_python(ctx: ActionContext, uv: str) -> Path | None:
    """The folder of the uv-managed Python that TestGen's venv runs on (in the installer's own
    Pythons, or in the user's uv Python folder), or None when TestGen runs on another Python."""
    try:
        config = (ctx.paths.venv / "pyvenv.cfg").read_text()
    except OSError:
        return None
    homes = [
        line.partition("=")[2].strip() for line in config.splitlines() if line.split("=")[0].strip() == "home"
    ]
    if not homes:
        return None
    install = Path(homes[0]).resolve().parent
    user_folder = run_command([uv, "python", "dir"], env=child_environment(), timeout=60).strip()
    roots = {ctx.paths.pythons.resolve(), Path(user_folder).resolve()}
    if install.parent in roots and MANAGED_PYTHON_KEY.fullmatch(install.name):
        return install
    return None


def add_managed_python(install: Path, root: Path) -> dict[str, str]:
    """The Python as uv's own downloads are made (an install_only archive: one `python` folder),
    so that uv installs it on the target as it installs any Python it manages."""
    name = f"python/{install.name}.tar.gz"
    (root / "python").mkdir()
    with tarfile.open(root / name, "w:gz", compresslevel=6) as archive:
        archive.add(install, arcname="python")
    key = MANAGED_PYTHON_KEY.fullmatch(install.name)
    assert key
    return {"file": name, "key": install.name, "version": ".".join(key.group(2, 3, 4))}


def bundle_action(ctx: ActionContext, output: Path, options: InstallOptions) -> None:
    state = load_state(ctx, required=True)
    assert state
    python = venv_bin(ctx.paths.venv, "python")
    found = _probe_python(python)
    uv = find_uv()
    if not found or not uv:
        raise InstallerError(
            f"TestGen's venv ({ctx.paths.venv}) or uv is missing: "
            f"repair it with `{ctx.self_command()} install`.",
            code=ErrorCode.VENV_BROKEN,
        )
    python_minor = ".".join(map(str, found[1][:2]))
    sources = ["--find-links", options.find_links, "--no-index"] if options.find_links else []
    if options.index_url:
        sources = ["--index-url", options.index_url, *sources[:2]]
    work = Path(tempfile.mkdtemp(prefix="bundle.", dir=ctx.paths.home))
    try:
        root = work / "content"
        root.mkdir()
        shutil.copy(installer_file(ctx), root / "dk_installer.py")
        digest = hashlib.sha256((root / "dk_installer.py").read_bytes()).hexdigest()
        (root / "dk_installer.py.sha256").write_text(f"{digest}  dk_installer.py\n")
        pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:"]
        with ctx.console.step("Download the runtime's wheels") as progress:
            for version in RUNTIME_PYTHONS:
                run_command(
                    [
                        *pip,
                        "--python-version",
                        version,
                        "-d",
                        str(root / "wheels/runtime"),
                        *pins_for(version),
                    ],
                    progress=progress,
                    error_code=ErrorCode.DOWNLOAD_FAILED,
                    what=f"pip download (the runtime's wheels for Python {version})",
                )
            progress.result = f"{len(list((root / 'wheels/runtime').iterdir()))} wheels, Python 3.9-3.13"
        with ctx.console.step(f"Download TestGen's wheels (Python {python_minor})") as progress:
            frozen = run_command([uv, "pip", "freeze", "--python", python], timeout=120).split()
            run_command(
                [
                    *pip,
                    "--no-deps",
                    "--python-version",
                    python_minor,
                    "-d",
                    str(root / "wheels/testgen"),
                    *sources,
                    *frozen,
                ],
                progress=progress,
                error_code=ErrorCode.DOWNLOAD_FAILED,
                what=f"pip download (TestGen's wheels for Python {python_minor})",
            )
            progress.result = f"{len(frozen)} packages"
        carried = None
        install = managed_python(ctx, uv)
        if install is not None:
            with ctx.console.step(f"Add TestGen's Python ({install.name}, managed by uv)") as progress:
                carried = add_managed_python(install, root)
                progress.result = f"{(root / carried['file']).stat().st_size / 1024**2:.1f} MB"
        files = {
            path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        manifest = {
            "format": BUNDLE_FORMAT,
            "schema": 1,
            "installer_version": __version__,
            "testgen_version": state.product_version,
            "python_version": python_minor,
            "platform": sysconfig.get_platform(),
            "files": files,
        }
        if carried:
            manifest["python"] = carried
        with ctx.console.step("Write the bundle") as progress:
            staged = work / "bundle.tar.gz"
            with tarfile.open(staged, "w:gz") as archive:
                data = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo(BUNDLE_MANIFEST)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                for name in files:
                    archive.add(root / name, arcname=name, recursive=False)
            output.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staged), output)
            progress.result = f"{output.stat().st_size / 1024**2:.1f} MB"
    except OSError as exc:
        raise InstallerError(
            f"Could not write the bundle {output}: {exc.strerror or exc}", code=ErrorCode.BUNDLE_INVALID
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ctx.console.say(
        f"Bundle: {output} (TestGen {state.product_version}, Python {python_minor}"
        f"{' (carried)' if carried else ''}, "
        f"{manifest['platform']}).\nSHA-256: {hashlib.sha256(output.read_bytes()).hexdigest()}\n"
        f"On the target: python3 dk_installer.py install --bundle {output.name}  "
        "(dk_installer.py is in the bundle)"
    )


def use_bundle(ctx: ActionContext) -> InstallOptions:
    """`install --bundle`: check and unpack the bundle, and install from it alone: TestGen's wheels
    with no index, its version, and a Python of the version its wheels are for."""
    import dataclasses

    options = ctx.options
    assert options.bundle
    unpacked = ctx.paths.home / BUNDLE_DIR
    try:
        manifest = unpack_bundle(str(options.bundle.absolute()), str(unpacked))
    except BundleError as exc:
        raise InstallerError(
            f"{exc}. Nothing was installed.",
            code=ErrorCode.CHECKSUM_MISMATCH if exc.tampered else ErrorCode.BUNDLE_INVALID,
        ) from None
    minor = str(manifest["python_version"])
    python = options.python or f"python{minor}"
    found = _probe_python(python)
    if found and ".".join(map(str, found[1][:2])) == minor:
        interpreter = found[0]
    elif options.python is None and isinstance(manifest.get("python"), dict):
        interpreter = install_bundled_python(ctx, unpacked, manifest)
    else:
        seen = "Python " + ".".join(map(str, found[1])) if found else "not found"
        carried = (
            ""
            if manifest.get("python")
            else " The bundle carries no Python: uv managed none where it was made."
        )
        raise InstallerError(
            f"This bundle's TestGen wheels are for Python {minor} ({manifest['platform']}), and this "
            f"machine lacks it ({python}: {seen}).{carried} "
            f"Install Python {minor}, or pass --python PATH to one.",
            code=ErrorCode.PYTHON_NOT_FOUND,
            exit_code=3,
        )
    return dataclasses.replace(
        options,
        find_links=str(unpacked / "wheels" / "testgen"),
        index_url=None,
        version=f"=={manifest['testgen_version']}",
        python=interpreter,
    )


def install_bundled_python(ctx: ActionContext, unpacked: Path, manifest: dict) -> str:
    """uv installs the bundle's Python in the installer's folder, from the bundle alone: a
    downloads list that names only that archive (its sha256 checked once more by uv)."""
    carried = manifest["python"]
    key = MANAGED_PYTHON_KEY.fullmatch(str(carried.get("key")))
    sha256 = manifest["files"].get(str(carried.get("file")))
    uv = find_uv()
    if key is None or sha256 is None or uv is None:
        raise InstallerError(
            f"The bundle's Python ({carried.get('key')}) cannot be installed here"
            + ("" if uv else ": uv is missing from the installer's runtime")
            + ". Nothing was installed.",
            code=ErrorCode.BUNDLE_INVALID,
        )
    name, major, minor, patch, system, arch, libc = key.groups()
    entry = {
        "name": name,
        "arch": {"family": arch, "variant": None},
        "os": system,
        "libc": libc,
        "major": int(major),
        "minor": int(minor),
        "patch": int(patch),
        "prerelease": "",
        "url": (unpacked / carried["file"]).as_uri(),
        "sha256": sha256,
        "variant": None,
        "build": None,
    }
    downloads = unpacked / "python-downloads.json"
    downloads.write_text(json.dumps({key.group(0): entry}))
    version = f"{major}.{minor}.{patch}"
    with ctx.console.step(f"Install Python {version} from the bundle") as progress:
        engine = PackageEngine("uv", uv, ctx.paths, ctx.settings)
        interpreter = engine.ensure_python(progress, request=version, downloads=downloads)
        progress.result = f"{interpreter}"
    return interpreter
