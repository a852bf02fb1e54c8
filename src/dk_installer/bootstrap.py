"""The start of every run, in the standard library only (Python 3.9+, and parsed by older ones so
that they are refused in one line): the Python check, the installer's own runtime venv (built on
first use, rebuilt when its pins change), the package's copy in it, and a bundle's checks.

With singlefile.py this module is the executable head of the file users download (dk_installer.py,
made by build.py), which carries the package's sources as text and runs them from there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

MIN_PYTHON = (3, 9)
# The runtime is rebuilt whenever this list changes (runtime_is_current). psutil: process trees
# and "which processes are ours", on Linux and macOS alike; truststore: the system trust store
# for the installer's own HTTPS (it needs Python 3.10+; https_verify() covers 3.9); pg8000 (with
# scramp, asn1crypto, python-dateutil and six): the client for TestGen's metadata on the user's own
# PostgreSQL, at the newest versions that still run on Python 3.9 (scramp 1.4.7 and later need 3.10).
RUNTIME_REQUIREMENTS = (
    "click==8.1.8",
    "requests==2.32.4",
    "distro==1.9.0",
    "psutil==7.2.2",
    "truststore==0.10.5; python_version >= '3.10'",
    "uv==0.13.9",
    "packaging==26.3",
    "pg8000==1.31.5",
    "scramp==1.4.6",
    "asn1crypto==1.5.1",
    "python-dateutil==2.9.0.post0",
    "six==1.17.0",
)
RUNTIME_MODULES = ("click", "requests", "distro", "psutil", "packaging", "pg8000")
RUNTIME_DIR = "runtime"
RUNTIME_RECEIPT = "dk-installer-requirements.txt"
RUNTIME_LOCK = "runtime.lock"  # in the home: one run at a time builds the runtime or its package copy
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REQUIREMENTS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def python_too_old_message(found: tuple[int, ...], executable: str) -> str | None:
    """The one-line refusal for an interpreter older than MIN_PYTHON, or None when it is new enough."""
    if tuple(found[:2]) >= MIN_PYTHON:
        return None
    needed = ".".join(map(str, MIN_PYTHON))
    version = ".".join(map(str, found[:3]))
    return f"dk-installer needs Python {needed} or newer; {executable} is Python {version}."


def restrict_umask() -> None:
    """Add 022 to the process umask, first thing on every run: under `umask 000` the installer's
    home, the runtime and TestGen's code would otherwise be writable by every local user, who
    could then replace code or plant files (a journal) that the next command acts on. Children
    (pip, uv, TestGen, its PostgreSQL) inherit it. A stricter umask the user chose is kept."""
    os.umask(os.umask(0o022) | 0o022)


def installer_home() -> str:
    default = os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"),
        "dk-installer",
    )
    return os.path.abspath(os.environ.get("DK_INSTALLER_HOME") or default)


def venv_bin(venv: str | os.PathLike[str], name: str) -> str:
    """A program in a venv (POSIX layout: this installer supports Linux and macOS)."""
    return os.path.join(venv, "bin", name)


def _missing_runtime_modules() -> list[str]:
    import importlib.util

    return [name for name in RUNTIME_MODULES if importlib.util.find_spec(name) is None]


def runtime_is_current(runtime: str) -> bool:
    """The runtime exists and was built from exactly RUNTIME_REQUIREMENTS."""
    try:
        with open(os.path.join(runtime, RUNTIME_RECEIPT)) as handle:
            built_from = handle.read().splitlines()
    except OSError:
        return False
    return built_from == list(RUNTIME_REQUIREMENTS) and os.path.exists(venv_bin(runtime, "python"))


def _venv_unavailable_hint() -> str | None:
    """Debian and Ubuntu ship Python without ensurepip: name the exact package to install."""
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        return (
            f"Python's venv module is not usable here ({sys.executable}). Install it with:\n"
            f"  sudo apt-get install python3-venv    (or: sudo apt-get install {minor}-venv)"
        )
    return None


# Every child the installer starts runs here, never in the user's current folder, where a uv.toml
# would choose the package index and a csv.py or venv.py would run inside a Python child. "/" always
# exists (a detached child outlives the installer's temporary folder; status and doctor create
# nothing) and only root can write in it. TestGen's own commands run in TestGen's home instead.
CHILD_CWD = "/"


def index_url_from_file(path: str) -> str:
    """The package index URL in the first line of `path` (--index-url-file): a URL with a token in
    it need not be typed on a command line, which every local user can read."""
    with open(path, encoding="utf-8") as handle:
        url = handle.readline().strip()
    if not url:
        raise ValueError(f"{path} is empty; its first line must be the package index URL")
    return url


def index_url_from_environment(environ: Mapping[str, str]) -> str | None:
    """The index named in the environment, in uv's order of precedence, then pip's."""
    names = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")
    return next((environ[name] for name in names if environ.get(name)), None)


def _option_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _package_sources(argv: list[str], environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The runtime's own packages come from where TestGen's will: --find-links in pip's arguments
    (alone, it means no index, as for TestGen), and the index (--index-url, --index-url-file, or
    the environment's, which may be uv's) in PIP_INDEX_URL, never in argv:
    a token in it would be readable in /proc by every local user."""
    find_links = _option_value(argv, "--find-links")
    if find_links is not None and "://" not in find_links:
        find_links = os.path.abspath(find_links)  # pip runs in CHILD_CWD, not the user's folder
    index = _option_value(argv, "--index-url")
    index_file = _option_value(argv, "--index-url-file")
    if index is None and index_file is not None:
        try:
            index = index_url_from_file(index_file)
        except (OSError, ValueError):
            pass  # the CLI explains an unreadable file; the runtime comes from the usual index
    if find_links is not None and index is None:
        return ["--find-links", find_links, "--no-index"], {}
    args = ["--find-links", find_links] if find_links is not None else []
    index = index or index_url_from_environment(environ)
    return args, ({"PIP_INDEX_URL": index} if index else {})


# TestGen's embedded PostgreSQL (pgserver) hands its data and socket paths to postgres unquoted, in
# an option string that pg_ctl passes through a shell: a space splits the path, non-ASCII fails,
# and a shell character would be interpreted. Everything TestGen keeps is under the home.
SAFE_PATH_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+@")
SAFE_PATH_WORDS = "letters, digits and / . _ - + @"


def _usable_home_near(home: str) -> str | None:
    """The nearest ancestor of `home` with a safe path that this user can write, plus
    /dk-installer (None when there is none)."""
    folder = os.path.dirname(home)
    while True:
        if (
            set(folder) <= SAFE_PATH_CHARACTERS
            and os.path.isdir(folder)
            and os.access(folder, os.W_OK | os.X_OK)
        ):
            return os.path.join(folder, "dk-installer")
        if folder == os.path.dirname(folder):
            return None
        folder = os.path.dirname(folder)


def home_path_problem(home: str) -> str | None:
    """Why TestGen could not run from a home at this path, with one that would work; None when
    the path is fine. Checked before anything is written there."""
    unsafe = sorted(set(home) - SAFE_PATH_CHARACTERS)
    if not unsafe:
        return None
    kinds = []
    if any(c.isspace() for c in unsafe):
        kinds.append("a space")
    if any(ord(c) > 127 for c in unsafe):
        kinds.append("non-ASCII characters")
    others = [c for c in unsafe if not c.isspace() and ord(c) <= 127]
    if others:
        kinds.append("the character" + ("s " if len(others) > 1 else " ") + " ".join(others))
    suggestion = _usable_home_near(home)
    example = f", for example DK_INSTALLER_HOME={suggestion}" if suggestion else ""
    return (
        f"{home!r} has {' and '.join(kinds)}, which TestGen's PostgreSQL cannot take in its data "
        f"path. Set DK_INSTALLER_HOME to a folder you can write whose path has only {SAFE_PATH_WORDS}"
        f"{example}."
    )


def home_unusable_message(home: str) -> str | None:
    """Why DK_INSTALLER_HOME cannot hold the installer's files, or None when it can; the same
    words as the preflight check, so a first run and a later one fail alike. The path is judged
    before the folder is made: a refused home is never created."""
    problem = home_path_problem(home)
    if problem:
        return f"Requirements not met:\n  - Installer home path: {problem}"
    try:
        os.makedirs(home, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    else:
        if os.access(home, os.W_OK | os.X_OK):
            return None
        reason = "not writable"
    return (
        "Requirements not met:\n"
        f"  - Installer home writable: {home} cannot be created or written ({reason}). "
        "Set DK_INSTALLER_HOME to a folder you can write."
    )


# The one decision about whom HTTPS trusts (tls.py and the package engine read it from here): a CA the
# user names in any of these variables decides for every tool; without one, the system trust store,
# where a corporate TLS-inspecting proxy's CA lives (pip, requests and uv each know only their own
# CA list by default).
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "PIP_CERT")


def ca_named_by_user(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name) for name in CA_VARIABLES)


def system_ca_file() -> str | None:
    """The system's OpenSSL bundle (what the ssl module reports), when there is one."""
    import ssl

    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.exists(cafile) else None


def _system_ca_args() -> list[str]:
    """For the pip that ensurepip ships, which verifies TLS with its own CA list."""
    cafile = None if ca_named_by_user(os.environ) else system_ca_file()
    return ["--cert", cafile] if cafile else []


def _create_runtime(runtime: str, argv: list[str]) -> None:
    """Build the runtime under a staging name and swap it in whole: a failed or interrupted
    build leaves the previous runtime (if any) exactly as it was."""
    import shutil
    import subprocess
    import threading
    import time

    hint = _venv_unavailable_hint()
    if hint:
        sys.stderr.write(hint + "\n")
        raise SystemExit(EXIT_REQUIREMENTS)
    log_dir = os.path.join(os.path.dirname(runtime), "logs")
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, "runtime-bootstrap.log")
    staging = runtime + ".staging"
    started = time.monotonic()
    done = threading.Event()
    interactive = sys.stderr.isatty()
    rebuilding = os.path.exists(runtime)
    old = runtime + ".old"

    def progress() -> None:
        frames = "|/-\\"
        i = 0
        while not done.wait(0.2 if interactive else 15):
            elapsed = time.monotonic() - started
            if interactive:
                sys.stderr.write(f"\r{frames[i % 4]} Preparing dk-installer's runtime ({elapsed:.0f}s)")
            else:
                sys.stderr.write(f"  still preparing dk-installer's runtime ({elapsed:.0f}s)\n")
            sys.stderr.flush()
            i += 1

    reason = "its pinned packages changed" if rebuilding else "first run only"
    sys.stderr.write(
        f"Preparing dk-installer's runtime ({reason}): "
        "click, requests, distro, psutil, packaging, pg8000, uv\n"
    )
    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    try:
        shutil.rmtree(staging, ignore_errors=True)
        source_args, source_env = _package_sources(argv, os.environ)
        # -I and CHILD_CWD: a venv.py or pip/ in the user's folder, or PYTHONPATH, is not imported.
        env = {**os.environ, **source_env}
        with open(log_path, "w") as log:
            for cmd in (
                [sys.executable, "-I", "-m", "venv", staging],
                [
                    venv_bin(staging, "python"),
                    "-I",
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    *_system_ca_args(),
                    *source_args,
                    *RUNTIME_REQUIREMENTS,
                ],
            ):
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                if subprocess.call(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=CHILD_CWD,
                    env=env,
                ):
                    raise OSError(f"'{' '.join(cmd[:5])}' failed")
        with open(os.path.join(staging, RUNTIME_RECEIPT), "w") as receipt:
            receipt.write("\n".join(RUNTIME_REQUIREMENTS) + "\n")
        # `python -m` works from a renamed venv (only its scripts embed the staging path), so the
        # runtime appears whole or not at all; the old one goes only once the new one is in place.
        shutil.rmtree(old, ignore_errors=True)
        if rebuilding:
            os.rename(runtime, old)
        os.rename(staging, runtime)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, KeyboardInterrupt) as exc:
        done.set()
        ticker.join()
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.exists(old) and not os.path.exists(runtime):
            os.rename(old, runtime)
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.write("\nInterrupted.\n")
            raise SystemExit(EXIT_INTERRUPTED) from None
        kept = f"The previous runtime in {runtime} is kept.\n" if rebuilding else ""
        sys.stderr.write(
            f"\nCould not prepare dk-installer's runtime: {exc}.\n{kept}"
            f"Full log: {log_path}\n"
            "Behind a proxy? Set HTTPS_PROXY. A mirror? Pass --index-url URL. Offline? --find-links DIR.\n"
        )
        raise SystemExit(EXIT_FAILED) from None
    done.set()
    ticker.join()
    # The spinner shares the line: clear it before the final message.
    sys.stderr.write(
        ("\r\x1b[2K" if interactive else "") + f"Runtime ready in {time.monotonic() - started:.1f}s.\n"
    )


class RuntimeBuildLock:
    """Held while a run builds the runtime or puts the package into it: two first runs at once
    would otherwise build into the same staging folder. The second waits (saying so), then finds
    the work done. Separate from the installer's command lock, which a whole install holds."""

    def __init__(self, home: str) -> None:
        self.path = os.path.join(home, RUNTIME_LOCK)
        self._fd: int | None = None

    def __enter__(self) -> RuntimeBuildLock:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write("Waiting for another dk-installer run to finish preparing the runtime...\n")
            sys.stderr.flush()
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except KeyboardInterrupt:
                sys.stderr.write("\nInterrupted.\n")
                raise SystemExit(EXIT_INTERRUPTED) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the lock
            self._fd = None


PACKAGE_STAMP = "BUILD"  # in the runtime's copy of the package: the build it was made from


def runtime_site_packages(runtime: str) -> str:
    import glob

    found = glob.glob(os.path.join(runtime, "lib", "python3*", "site-packages"))
    if not found:
        raise OSError(f"{runtime} has no site-packages")
    return found[0]


def _package_is_current(target: str, build_id: str) -> bool:
    try:
        with open(os.path.join(target, PACKAGE_STAMP)) as handle:
            return handle.read() == build_id
    except OSError:
        return False


def install_package(python: str, sources: dict[str, str], build_id: str) -> None:
    """Put the package from `sources` into the runtime, byte-compiled, unless that exact build is
    there already (one small read on every run). Staged and swapped, so a run that is killed
    half-way leaves the previous copy whole; under the runtime build lock, so that two runs never
    swap at once (a rename onto the copy the other just put in place would fail)."""
    runtime = os.path.dirname(os.path.dirname(python))
    target = os.path.join(runtime_site_packages(runtime), "dk_installer")
    if _package_is_current(target, build_id):
        return
    with RuntimeBuildLock(os.path.dirname(runtime)):
        if not _package_is_current(target, build_id):  # another run may have put it there meanwhile
            _swap_in_package(python, target, sources, build_id)


def _swap_in_package(python: str, target: str, sources: dict[str, str], build_id: str) -> None:
    import shutil
    import subprocess

    staging = f"{target}.{os.getpid()}.tmp"
    old = f"{target}.{os.getpid()}.old"
    shutil.rmtree(staging, ignore_errors=True)
    for relative, text in sources.items():
        path = os.path.join(staging, *relative.split("/")[1:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    subprocess.call(
        [python, "-I", "-m", "compileall", "-q", staging], stdin=subprocess.DEVNULL, cwd=CHILD_CWD
    )
    with open(os.path.join(staging, PACKAGE_STAMP), "w") as handle:
        handle.write(build_id)
    if os.path.exists(target):
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


BUNDLE_MANIFEST = "manifest.json"  # the first member of a bundle: the sha256 of every other one
BUNDLE_FORMAT = "dk-installer-bundle"
BUNDLE_DIR = "bundle"  # where a bundle is unpacked in DK_INSTALLER_HOME while `install --bundle` runs


class BundleError(ValueError):
    """A bundle that is missing, damaged, foreign or tampered with (`tampered`: a checksum)."""

    def __init__(self, message: str, tampered: bool = False) -> None:
        super().__init__(message)
        self.tampered = tampered


def _bundle_members(archive: str, dest: str | None) -> dict:
    """Read the bundle; every member must be a plain file the manifest names, with its sha256,
    and every file the manifest names must be there. With `dest`, also write the files there."""
    import hashlib
    import json
    import tarfile

    try:
        bundle = tarfile.open(archive, "r:gz")  # noqa: SIM115 (a `with` follows)
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{archive} is not a dk-installer bundle ({exc})") from None
    with bundle:
        try:
            first = bundle.next()
            reader = bundle.extractfile(first) if first and first.name == BUNDLE_MANIFEST else None
            manifest = json.loads(reader.read()) if reader else None
            if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
                raise BundleError(f"{archive} is not a dk-installer bundle (no manifest)")
            expected = dict(manifest["files"])
            seen = set()
            for member in bundle:
                if member is first:
                    continue  # iterating a TarFile starts again at its first member
                name = member.name
                if not member.isfile() or name not in expected or name in seen:
                    raise BundleError(f"{archive} holds {name!r}, which its manifest does not list", True)
                digest = hashlib.sha256()
                source = bundle.extractfile(member)
                assert source is not None
                target = None
                if dest is not None:
                    path = os.path.join(dest, *name.split("/"))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    target = open(path, "wb")  # noqa: SIM115 (closed below)
                try:
                    # No `:=`: this file must still parse on the Pythons it refuses (3.7).
                    while True:
                        block = source.read(1 << 20)
                        if not block:
                            break
                        digest.update(block)
                        if target is not None:
                            target.write(block)
                finally:
                    if target is not None:
                        target.close()
                if digest.hexdigest() != expected[name]:
                    raise BundleError(
                        f"{name} in {archive} does not match its checksum: tampered or damaged", True
                    )
                seen.add(name)
        except (OSError, tarfile.TarError, ValueError, KeyError, TypeError, EOFError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"{archive} is damaged ({type(exc).__name__}: {exc})") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise BundleError(f"{archive} lacks {', '.join(missing[:3])}, which its manifest lists", True)
    return manifest


def unpack_bundle(archive: str, dest: str) -> dict:
    """Check every file of the bundle against its manifest without writing anything, then unpack
    it into `dest` (staged, checked again as it is written, and renamed whole). Returns the
    manifest."""
    import json
    import shutil

    _bundle_members(archive, None)
    staging = f"{dest}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        manifest = _bundle_members(archive, staging)
        with open(os.path.join(staging, BUNDLE_MANIFEST), "w") as handle:
            json.dump(manifest, handle)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _bundle_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--bundle" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--bundle="):
            return arg.split("=", 1)[1]
    return None


REFRESH_RUNTIME = "--refresh-runtime"  # self-update's first run of a new file (never typed by users)


def refresh_runtime(
    runtime: str, argv: list[str], sources: dict[str, str], build_id: str, version: str
) -> int:
    """Make the runtime run THIS file's package, for self-update before it swaps the file in:
    rebuild the runtime when this file's pins differ, put this build's package in it, and check
    that `python -m dk_installer --version` answers as this file does. On any failure the
    runtime's previous package is put back (the launcher and the service run it directly), so
    the old installer keeps working."""
    import shutil
    import subprocess

    keep = os.path.join(os.path.dirname(runtime), "runtime-package.keep")
    shutil.rmtree(keep, ignore_errors=True)
    try:
        shutil.copytree(os.path.join(runtime_site_packages(runtime), "dk_installer"), keep, symlinks=True)
    except OSError:
        keep = ""  # no runtime package yet: nothing to put back
    python = venv_bin(runtime, "python")
    answer = ""
    try:
        if not runtime_is_current(runtime):
            _create_runtime(runtime, argv)
        install_package(python, sources, build_id)
        check = subprocess.run(
            [python, "-I", "-m", "dk_installer", "--version"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        answer = check.stdout
    except (OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"The runtime could not run this installer: {exc}\n")
    except SystemExit:
        pass  # _create_runtime said why
    if answer == version:
        shutil.rmtree(keep, ignore_errors=True)
        return EXIT_OK
    if answer:
        sys.stderr.write(f"The runtime's package answered {answer.strip()!r}, not {version.strip()!r}.\n")
    if keep:
        target = os.path.join(runtime_site_packages(runtime), "dk_installer")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(keep, target)
    return EXIT_FAILED
