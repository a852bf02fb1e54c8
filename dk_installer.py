#!/usr/bin/env python3
"""dk-installer: install, run and manage DataKitchen's DataOps TestGen with one command.

    python3 dk_installer.py install

The file is downloadable on its own and organised in sections:

  1. Bootstrap        stdlib only: checks the Python version, creates the installer's own runtime
                      venv (click, requests, distro, uv) on first use and re-executes itself there.
  2. Paths, settings  where everything lives, the install receipt (state.json), user settings.
  3. Console output   steps with OK / SKIPPED / FAILED, live progress, colour rules.
  4. Command runner   subprocesses with logs, secret redaction, process-group teardown.
  5. Analytics        one anonymous event per action, spooled and sent by a detached sender.
  6. TestGen          what the installer knows about the product: its venv, CLI and HTTP endpoints.
  7. Steps            small units of work that know how to undo themselves.
  8. Actions          install, upgrade, start, stop, status, uninstall, doctor, logs; the action
                      boundary that turns every outcome into an exit code and one analytics event.
  9. Command line     the click CLI.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

# ---------------------------------------------------------------------------------------------
# 1. Bootstrap (stdlib only: this runs before any third-party import)
# ---------------------------------------------------------------------------------------------

MIN_PYTHON = (3, 9)
# The runtime is rebuilt whenever this list changes (runtime_is_current). psutil: process trees
# and "which processes are ours", on Linux and macOS alike; truststore: the system trust store
# for the installer's own HTTPS (it needs Python 3.10+; https_verify() covers 3.9).
RUNTIME_REQUIREMENTS = (
    "click==8.1.8",
    "requests==2.32.4",
    "distro==1.9.0",
    "psutil==7.2.2",
    "truststore==0.10.5; python_version >= '3.10'",
    "uv==0.13.9",
)
RUNTIME_MODULES = ("click", "requests", "distro", "psutil")
RUNTIME_DIR = "runtime"
RUNTIME_RECEIPT = "dk-installer-requirements.txt"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REQUIREMENTS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def python_too_old_message(found: tuple[int, ...], executable: str) -> str | None:
    """The one-line refusal for an interpreter older than MIN_PYTHON, or None when it is new enough."""
    if tuple(found[:2]) >= MIN_PYTHON:
        return None
    needed = ".".join(map(str, MIN_PYTHON))
    version = ".".join(map(str, found[:3]))
    return f"dk-installer needs Python {needed} or newer; {executable} is Python {version}."


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


def _package_source_args(argv: list[str]) -> list[str]:
    """Mirror --index-url / --find-links for the runtime's own packages (air-gapped installs:
    --find-links alone means no index, as for TestGen's own packages)."""
    args: list[str] = []
    for flag in ("--index-url", "--find-links"):
        for i, arg in enumerate(argv):
            if arg == flag and i + 1 < len(argv):
                args += [flag, argv[i + 1]]
            elif arg.startswith(flag + "="):
                args += [flag, arg.split("=", 1)[1]]
    if "--find-links" in args and "--index-url" not in args:
        args.append("--no-index")
    return args


def home_unusable_message(home: str) -> str | None:
    """Why DK_INSTALLER_HOME cannot hold the installer's files, or None when it can; the same
    words as the preflight check, so a first run and a later one fail alike."""
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


def _system_ca_args() -> list[str]:
    """The pip that ensurepip ships verifies TLS with its own CA list, which lacks a corporate
    TLS-inspecting proxy's CA; the system's OpenSSL bundle (what the ssl module reports) has it.
    A CA the user set in the environment or in pip's config decides instead."""
    import ssl

    if any(os.environ.get(name) for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")):
        return []
    cafile = ssl.get_default_verify_paths().cafile
    return ["--cert", cafile] if cafile and os.path.exists(cafile) else []


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
    sys.stderr.write(f"Preparing dk-installer's runtime ({reason}): click, requests, distro, psutil, uv\n")
    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    try:
        shutil.rmtree(staging, ignore_errors=True)
        with open(log_path, "w") as log:
            for cmd in (
                [sys.executable, "-m", "venv", staging],
                [
                    venv_bin(staging, "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    *_system_ca_args(),
                    *_package_source_args(argv),
                    *RUNTIME_REQUIREMENTS,
                ],
            ):
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                if subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL):
                    raise OSError(f"'{' '.join(cmd[:4])}' failed")
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


def bootstrap(argv: list[str]) -> None:
    """Make sure the runtime's modules are importable, re-executing in the runtime venv if not."""
    refusal = python_too_old_message(tuple(sys.version_info), sys.executable)
    if refusal:
        sys.stderr.write(refusal + "\n")
        raise SystemExit(EXIT_REQUIREMENTS)
    if not _missing_runtime_modules():
        return
    runtime = os.path.join(installer_home(), RUNTIME_DIR)
    if os.environ.get("DK_INSTALLER_BOOTSTRAPPED"):
        sys.stderr.write(
            "dk-installer's runtime is incomplete (missing: "
            + ", ".join(_missing_runtime_modules())
            + f"). Remove {runtime} and run the command again.\n"
        )
        raise SystemExit(EXIT_FAILED)
    if not runtime_is_current(runtime):
        unusable = home_unusable_message(os.path.dirname(runtime))
        if unusable:
            sys.stderr.write(unusable + "\n")
            raise SystemExit(EXIT_REQUIREMENTS)
        _create_runtime(runtime, argv)
    python = venv_bin(runtime, "python")
    _refresh_runtime_copy(python)
    os.environ["DK_INSTALLER_BOOTSTRAPPED"] = "1"
    # For the hints we print later: how the user ran us, not the runtime's copy.
    os.environ.setdefault("DK_INSTALLER_PYTHON", sys.executable)
    os.environ.setdefault("DK_INSTALLER_SCRIPT", os.path.abspath(__file__))
    # -I: the user's PYTHONPATH and current directory cannot shadow the runtime's modules.
    os.execv(python, [python, "-I", "-m", "dk_installer", *argv])


def _refresh_runtime_copy(python: str) -> None:
    """Keep a byte-compiled copy of this file in the runtime's site-packages: running it with -m
    skips compiling 120 KB of source on every command (bench/startup.py)."""
    import glob
    import subprocess

    with open(__file__, "rb") as handle:
        source = handle.read()
    runtime = os.path.dirname(os.path.dirname(python))
    site_packages = glob.glob(os.path.join(runtime, "lib", "python3*", "site-packages"))[0]
    copy = os.path.join(site_packages, "dk_installer.py")
    try:
        with open(copy, "rb") as handle:
            if handle.read() == source:
                return
    except OSError:
        pass
    staging = f"{copy}.{os.getpid()}.tmp"
    with open(staging, "wb") as handle:
        handle.write(source)
    os.replace(staging, copy)
    subprocess.call([python, "-I", "-m", "py_compile", copy])


if __name__ == "__main__":
    bootstrap(sys.argv[1:])

# ---------------------------------------------------------------------------------------------
# Everything below may use the runtime's packages. Modules that only some commands need
# (requests, distro, platform, secrets, socket, uuid) are imported where they are used, so that
# --help and status start fast (bench/startup.py).
# ---------------------------------------------------------------------------------------------

import contextlib
import dataclasses
import datetime
import enum
import json
import logging
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar

import click

log = logging.getLogger("dk_installer")

# ---------------------------------------------------------------------------------------------
# 2. Paths and settings
# ---------------------------------------------------------------------------------------------

STATE_SCHEMA = 1
DEFAULT_UI_PORT = 8501
DEFAULT_API_PORT = 8530
LOOPBACK = "127.0.0.1"  # where new installs listen unless --listen says otherwise
ALL_ADDRESSES = "0.0.0.0"
MIN_FREE_DISK_BYTES = 3 * 1024**3
START_TIMEOUT_S = 120.0
DEFAULT_INDEX_URL = "https://pypi.org/simple"
ANALYTICS_BASE_URL = "https://api.mixpanel.com"
MIXPANEL_TOKEN = "b1a0a4e8ef2f4f1f9a6e0e4c7d2f6a91"
LOG_FILES_KEPT = 20
APP_LOG_MAX_BYTES = 10 * 1024**2  # logs/testgen-app.log is rotated at this size ...
APP_LOG_KEPT = 5  # ... keeping this many older files (testgen-app.log.1 to .5)
LAUNCHERS = ("install.sh", "direct", "package", "launcher")
# Set by a user who trusts a CA of their own; without them the system trust store is used.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")
CI_PROVIDERS = (
    ("GITHUB_ACTIONS", "github_actions"),
    ("GITLAB_CI", "gitlab"),
    ("JENKINS_URL", "jenkins"),
    ("CIRCLECI", "circleci"),
    ("BUILDKITE", "buildkite"),
    ("TF_BUILD", "azure_pipelines"),
    ("TRAVIS", "travis"),
    ("BITBUCKET_BUILD_NUMBER", "bitbucket"),
    ("TEAMCITY_VERSION", "teamcity"),
    ("CODEBUILD_BUILD_ID", "aws_codebuild"),
    ("DRONE", "drone"),
    ("APPVEYOR", "appveyor"),
    ("SEMAPHORE", "semaphore"),
)


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
    def settings(self) -> Path:
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


def _flag(value: str | None, words: Sequence[str]) -> bool:
    return (value or "").strip().lower() in words


_YES = ("1", "true", "yes")
_NO = ("no", "false", "0", "off")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the environment says, read once per command (README "Environment variables")."""

    min_free_bytes: int = MIN_FREE_DISK_BYTES
    start_timeout_s: float = START_TIMEOUT_S
    force_pip: bool = False
    index_url: str | None = None
    no_color: bool = False
    has_display: bool = False
    do_not_track: bool = False
    analytics_opt_out: bool = False
    analytics_debug: bool = False
    analytics_url: str = ANALYTICS_BASE_URL
    analytics_token: str = MIXPANEL_TOKEN
    context: str | None = None
    launched_by: str = "package"
    ci: bool = False
    ci_provider: str | None = None
    user_python: str | None = None
    user_script: str | None = None
    ca_from_environment: bool = False
    failpoint: str | None = None
    app_log_max_bytes: int = APP_LOG_MAX_BYTES

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        launcher = env.get("DK_INSTALLER_LAUNCHED_BY", "package")
        provider = next((name for variable, name in CI_PROVIDERS if env.get(variable)), None)
        context = env.get("DK_INSTALLER_CONTEXT", "")
        return cls(
            min_free_bytes=int(env.get("DK_INSTALLER_MIN_FREE_BYTES") or MIN_FREE_DISK_BYTES),
            start_timeout_s=float(env.get("DK_INSTALLER_START_TIMEOUT") or START_TIMEOUT_S),
            force_pip=_flag(env.get("DK_INSTALLER_PACKAGE_ENGINE"), ("pip",)),
            index_url=env.get("UV_INDEX_URL") or env.get("PIP_INDEX_URL") or None,
            no_color="NO_COLOR" in env,
            has_display=sys.platform == "darwin" or bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")),
            do_not_track=_flag(env.get("DO_NOT_TRACK"), _YES),
            analytics_opt_out=_flag(env.get("DK_INSTALLER_ANALYTICS"), _NO),
            analytics_debug=_flag(env.get("DK_INSTALLER_ANALYTICS_DEBUG"), _YES),
            analytics_url=(env.get("DK_INSTALLER_ANALYTICS_URL") or ANALYTICS_BASE_URL).rstrip("/"),
            analytics_token=env.get("DK_INSTALLER_ANALYTICS_TOKEN") or MIXPANEL_TOKEN,
            context=context if re.match(r"^[a-z0-9_-]{1,32}$", context) else None,
            launched_by=launcher if launcher in LAUNCHERS else "direct",
            ci=provider is not None or _flag(env.get("CI"), _YES),
            ci_provider=provider,
            user_python=env.get("DK_INSTALLER_PYTHON") or None,
            user_script=env.get("DK_INSTALLER_SCRIPT") or None,
            ca_from_environment=any(env.get(name) for name in CA_VARIABLES),
            failpoint=env.get("DK_INSTALLER_FAILPOINT") or None,
            app_log_max_bytes=int(env.get("DK_INSTALLER_APP_LOG_MAX_BYTES") or APP_LOG_MAX_BYTES),
        )


def write_file_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temporary file beside `path`, fsync it and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when the file is missing or holds something else."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


class StateCorrupt(Exception):
    """state.json exists but cannot be trusted."""


_JSON_TYPES: dict[str, type] = {"int": int, "str": str, "bool": bool, "None": type(None)}


def json_value_fits(annotation: str, value: Any) -> bool:
    """Does a JSON value fit a field annotated `int`, `str | None`, ...? (a bool is not an int)."""
    kinds = tuple(_JSON_TYPES[part.strip()] for part in annotation.split("|"))
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


@dataclasses.dataclass
class InstallState:
    """The install receipt: what was installed, how, and where it listens."""

    product_version: str
    version_spec: str
    ui_port: int
    api_port: int
    package_engine: str
    python: str
    python_version: str
    venv: str
    installed_at: str
    updated_at: str
    demo_data: bool
    # Receipts written before these fields existed describe TestGen's own defaults: every address,
    # plain HTTP. Updating the installer must never cut a team off its shared VM.
    listen: str = ALL_ADDRESSES
    tls: bool = False
    installer_version: str = __version__
    schema: int = STATE_SCHEMA

    @classmethod
    def load(cls, path: Path) -> InstallState | None:
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StateCorrupt(f"{path} is not valid JSON ({type(exc).__name__})") from None
        if not isinstance(raw, dict):
            raise StateCorrupt(f"{path} does not hold a JSON object")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name not in raw:
                if field.default is dataclasses.MISSING:
                    raise StateCorrupt(f"{path} lacks '{field.name}'")
                continue
            value = raw[field.name]
            if not json_value_fits(str(field.type), value):
                raise StateCorrupt(f"{path}: '{field.name}' should be {field.type}, found {value!r}")
            values[field.name] = value
        if values.get("schema", STATE_SCHEMA) != STATE_SCHEMA:
            raise StateCorrupt(f"{path} has schema {values['schema']}, this installer reads {STATE_SCHEMA}")
        for port in ("ui_port", "api_port"):
            if not 1 <= values[port] <= 65535:
                raise StateCorrupt(f"{path}: '{port}' is out of range")
        return cls(**values)

    def save(self, path: Path) -> None:
        write_file_atomically(path, json.dumps(dataclasses.asdict(self), indent=2) + "\n")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


class UserSettings:
    """The user's saved choices (analytics, anonymous id, notices seen) in the user config dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values = read_json_object(path)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def update(self, **changes: Any) -> None:
        for key, value in changes.items():
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value
        write_file_atomically(self.path, json.dumps(self.values, indent=2) + "\n", mode=0o600)


class InstallerLock:
    """One mutating command at a time, per DK_INSTALLER_HOME."""

    def __init__(self, path: Path, action: str) -> None:
        self.path = path
        self.action = action
        self._handle: Any = None

    def acquire(self) -> None:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")  # noqa: SIM115 (held open: the lock lives as long as it)
        except OSError:
            log.debug("no lock: %s cannot be written; preflight reports why", self.path)
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another command"
            handle.close()
            raise InstallerError(
                f"Another dk-installer command is running ({holder}). Wait for it to finish and try again.",
                code="busy",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{self.action} (pid {os.getpid()})")
        handle.flush()
        self._handle = handle

    @property
    def held(self) -> bool:
        return self._handle is not None

    @staticmethod
    def held_elsewhere(path: Path) -> bool:
        """Does a running command hold the lock? (For read-only commands, which never take it.)"""
        import fcntl

        try:
            with open(path) as handle:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            self._handle.close()
            self._handle = None


# ---------------------------------------------------------------------------------------------
# 3. Console output
# ---------------------------------------------------------------------------------------------


class ErrorCode(str, enum.Enum):
    """What went wrong, as analytics sees it (README "Error codes"). An enum, so that a typo is an
    error where it is written, never a silent null in the event."""

    BACKUP_FAILED = "backup_failed"
    BACKUP_INVALID = "backup_invalid"
    BUSY = "busy"
    CONFIG_NOT_WRITABLE = "config_not_writable"
    DISK_FULL = "disk_full"
    HOME_NOT_WRITABLE = "home_not_writable"
    INDEX_UNREACHABLE = "index_unreachable"
    INTERRUPTED = "interrupted"
    LOGIN_FAILED = "login_failed"
    NOT_INSTALLED = "not_installed"
    PACKAGE_INSTALL_FAILED = "package_install_failed"
    PACKAGE_NOT_FOUND = "package_not_found"
    PORT_IN_USE = "port_in_use"
    PYTHON_NOT_FOUND = "python_not_found"
    PYTHON_TOO_OLD = "python_too_old"
    SETUP_FAILED = "setup_failed"
    START_FAILED = "start_failed"
    STATE_CORRUPT = "state_corrupt"
    STOP_FAILED = "stop_failed"
    UPGRADE_FAILED = "upgrade_failed"
    VENV_BROKEN = "venv_broken"
    VERSION_CONFLICT = "version_conflict"
    SERVICE_UNAVAILABLE = "service_unavailable"
    SUBPROCESS_FAILED = "subprocess_failed"
    UNEXPECTED = "unexpected"


ERROR_CODES = tuple(code.value for code in ErrorCode)


class InstallerError(Exception):
    """A failure the user can act on. `code` is what analytics sees (a string is checked)."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str = ErrorCode.UNEXPECTED,
        exit_code: int = EXIT_FAILED,
        details: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = ErrorCode(code)
        self.exit_code = exit_code
        self.details = details


@dataclasses.dataclass
class Requirement:
    """One preflight or doctor check; `code` is the error code it stands for when it fails."""

    code: ErrorCode
    title: str
    ok: bool
    detail: str
    blocking: bool = True


@dataclasses.dataclass
class PythonCheck(Requirement):
    """The Python check also says which interpreter it found (None: uv will download one)."""

    interpreter: str | None = None
    version: str | None = None


class RequirementsNotMet(InstallerError):
    def __init__(self, failed: list[Requirement]) -> None:
        lines = "\n".join(f"  - {r.title}: {r.detail}" for r in failed)
        super().__init__(f"Requirements not met:\n{lines}", code=failed[0].code, exit_code=EXIT_REQUIREMENTS)
        self.failed = failed


class StepSkipped(Exception):
    """Raised by a step that has nothing to do; the message says why."""


def echo(text: str, *, err: bool = False, nl: bool = True) -> None:
    """click.echo that never raises: after SIGHUP the terminal is gone (EIO) or a pipe is closed,
    and the rollback that follows must still run to the end."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(text, err=err, nl=nl)


class Console:
    """What the user sees. Progress and messages go to stdout, problems to stderr. Colour only on
    a terminal, never with NO_COLOR."""

    STATUS_COLOURS: ClassVar[dict[str, str]] = {"OK": "green", "SKIPPED": "yellow", "FAILED": "red"}

    def __init__(self, quiet: bool = False, no_color: bool = False) -> None:
        self.quiet = quiet
        self.interactive = sys.stdout.isatty()
        self.colour = not no_color and self.interactive
        self.error_colour = not no_color and sys.stderr.isatty()

    def style(self, text: str, **kwargs: Any) -> str:
        return click.style(text, **kwargs) if self.colour else text

    def say(self, text: str = "") -> None:
        if not self.quiet:
            echo(text)

    def warn(self, text: str) -> None:
        echo(click.style(text, fg="yellow") if self.error_colour else text, err=True)

    def error(self, text: str) -> None:
        echo(click.style(text, fg="red") if self.error_colour else text, err=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Progress]:
        progress = Progress(self, title)
        progress.begin()
        try:
            yield progress
        except StepSkipped as skipped:
            progress.end("SKIPPED", str(skipped))
            raise
        except BaseException:
            progress.end("FAILED")
            raise
        progress.end("OK", progress.result)


class Progress:
    """A step's line: a live spinner with elapsed time and current activity on a terminal,
    plain start and end lines (and a heartbeat every 15 s) elsewhere."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.activity = ""
        self.result = ""
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = shutil.get_terminal_size((100, 20)).columns

    def update(self, activity: str) -> None:
        self.activity = " ".join(activity.split())

    def begin(self) -> None:
        log.info("step: %s", self.title)
        if self.console.quiet:
            return
        if not self.console.interactive:
            echo(f"{self.title} ...")
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        frame = 0
        interval = 0.1 if self.console.interactive else 15.0
        while not self._stop.wait(interval):
            elapsed = time.monotonic() - self.started
            if self.console.interactive:
                if elapsed < 1:
                    continue
                line = (
                    f"{self.FRAMES[frame % len(self.FRAMES)]} {self.title}  {elapsed:4.0f}s  {self.activity}"
                )
                echo("\r\x1b[2K" + line[: self._width - 1], nl=False)
                frame += 1
            else:
                echo(f"  ... {elapsed:.0f}s {self.activity}".rstrip())

    def end(self, status: str, detail: str = "") -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        elapsed = time.monotonic() - self.started
        log.info("step %s: %s %s (%.1fs)", self.title, status, detail, elapsed)
        if self.console.quiet:
            return
        if self.console.interactive:
            echo("\r\x1b[2K", nl=False)
        label = self.console.style(f"{status:<7}", fg=Console.STATUS_COLOURS[status], bold=True)
        suffix = f"  {detail}" if detail else ""
        echo(f"{label} {self.title} ({elapsed:.1f}s){suffix}")


# ---------------------------------------------------------------------------------------------
# 4. Command runner
# ---------------------------------------------------------------------------------------------

SECRET_KEYS = ("TESTGEN_PASSWORD", "TG_DECRYPT_PASSWORD", "TG_DECRYPT_SALT", "TG_JWT_HASHING_KEY")
REDACTED = "[REDACTED]"


class Redactor:
    """Replaces known secret values, and the values of known secret keys, before text is stored."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        keys = "|".join(SECRET_KEYS)
        self._key_pattern = re.compile(rf"((?:{keys})\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)")

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6:
            self.secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return self._key_pattern.sub(rf"\g<1>{REDACTED}", text)


redact = Redactor()


def file_tail(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a file (reading at most `max_bytes` from its end), redacted."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - max_bytes))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return redact("\n".join(text.splitlines()[-lines:]))


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def start_run_log(paths: Paths, action: str, verbose: bool) -> Path | None:
    """Every run writes a debug log; the newest LOG_FILES_KEPT are kept."""
    import platform

    log.setLevel(logging.DEBUG)
    log.propagate = False
    if verbose:
        stderr_handler = logging.StreamHandler(sys.stderr)
        stderr_handler.setFormatter(RedactingFormatter("debug: %(message)s"))
        log.addHandler(stderr_handler)
    try:
        paths.logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        log_path = paths.logs / f"dk-installer-{stamp}-{os.getpid()}-{action}.log"
        handler = logging.FileHandler(log_path)
    except OSError:
        return None
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    old_logs = sorted(paths.logs.glob("dk-installer-*.log"), key=lambda p: p.stat().st_mtime)
    for old in old_logs[:-LOG_FILES_KEPT]:
        with contextlib.suppress(OSError):
            old.unlink()
    log.info("dk-installer %s, %s, Python %s", __version__, action, platform.python_version())
    return log_path


def current_log_path() -> str:
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return "(no log file)"


class CommandFailed(InstallerError):
    pass


def stop_process_group(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is still there after `grace`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_command(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdin_text: str | None = None,
    progress: Progress | None = None,
    timeout: float | None = None,
    error_code: str = "subprocess_failed",
    what: str | None = None,
) -> str:
    """Run `cmd` in its own process group, logging its output (redacted) and feeding the latest
    line to `progress`. Returns stdout. Raises CommandFailed with the last stderr lines."""
    log.info("$ %s", " ".join(cmd))
    process = subprocess.Popen(
        list(cmd),
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    stdout_lines: list[str] = []
    stderr_tail: deque[str] = deque(maxlen=15)

    def pump(stream: Any, sink: Callable[[str], None], label: str) -> None:
        for line in stream:
            line = line.rstrip("\n")
            log.debug("%s| %s", label, line)
            sink(line)
            if progress and line.strip():
                progress.update(redact(line)[:120])

    readers = [
        threading.Thread(target=pump, args=(process.stdout, stdout_lines.append, "out"), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, stderr_tail.append, "err"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        if stdin_text is not None and process.stdin:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(stdin_text)
                process.stdin.close()
        returncode = process.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(process)
        raise CommandFailed(
            f"{what or cmd[0]} did not finish within {timeout:.0f}s.",
            code=error_code,
            details=redact("\n".join(stderr_tail)),
        ) from None
    except BaseException:
        stop_process_group(process)
        raise
    for reader in readers:
        reader.join(5)
    log.info("exit code %s", returncode)
    if returncode != 0:
        raise CommandFailed(
            f"{what or Path(cmd[0]).name} failed (exit code {returncode}).",
            code=error_code,
            details=redact("\n".join(list(stderr_tail)[-10:] or stdout_lines[-10:])),
        )
    return "\n".join(stdout_lines)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Let cleanup finish: a Ctrl+C, SIGTERM or SIGHUP arriving now is remembered and re-raised after."""
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in INTERRUPTING_SIGNALS}
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in previous:
            signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt


# A dropped SSH session (SIGHUP) is an interruption like Ctrl+C and SIGTERM: rolled back, exit 130.
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def https_verify(settings: Settings) -> bool | str:
    """What requests should verify HTTPS against. Without a CA variable in the environment, the
    system trust store (a TLS-inspecting proxy's CA lives there; requests alone knows only
    certifi's): truststore where the Python has it, else the system's OpenSSL bundle."""
    if settings.ca_from_environment:
        return True
    try:
        import truststore
    except ImportError:
        import ssl

        cafile = ssl.get_default_verify_paths().cafile
        return cafile if cafile and os.path.exists(cafile) else True
    truststore.inject_into_ssl()
    return True


# ---------------------------------------------------------------------------------------------
# 5. Analytics
#
# One entry point: record_event(), called once by the action boundary when an action ends.
# It appends the event to a spool file in the user config dir and starts a detached sender
# process, then returns: the action never waits for the network. The sender posts the spool in
# one request and kills itself after SENDER_LIFETIME_S whatever happens (DNS included).
# ---------------------------------------------------------------------------------------------

ANALYTICS_SCHEMA = 1
NOTICE_VERSION = 2  # version 2 also tells what TestGen's own analytics do
SPOOL_MAX_EVENTS = 100
SPOOL_MAX_BYTES = 256 * 1024
SPOOL_MAX_AGE_S = 5 * 24 * 3600
SENDER_LIFETIME_S = 10
SEND_TIMEOUT_S = (3.0, 3.0)
BREAKER_FAILURES = 3
BREAKER_PAUSE_S = 24 * 3600
HISTORY_KEPT = 20
PRIVACY_URL = "https://github.com/DataKitchen/dk-installer#privacy-and-analytics"

ACTIONS = (
    "install",
    "upgrade",
    "start",
    "stop",
    "status",
    "uninstall",
    "doctor",
    "logs",
    "service_enable",
    "service_disable",
    "service_status",
    "backup",
    "restore",
)
OUTCOMES = ("success", "failure", "aborted", "interrupted")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_VERSION_LIKE = re.compile(r"^[0-9A-Za-z._+~-]{1,64}$")
_CONTEXT = re.compile(r"^[a-z0-9_-]{1,32}$")
_UTC_OFFSET = re.compile(r"^[+-]\d\d:\d\d$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _matches(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and bool(pattern.match(value))


def _one_of(choices: Sequence[str]) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_identifier_list(value: Any) -> bool:
    return isinstance(value, list) and all(_matches(_IDENTIFIER)(item) for item in value)


# The allow-list: a property not named here is never sent, and a value its check rejects is
# sent as null. README's "Privacy and analytics" section shows a sample with exactly these keys.
EVENT_SCHEMA: dict[str, Callable[[Any], bool]] = {
    "token": _matches(re.compile(r"^[0-9A-Za-z]{1,64}$")),
    "distinct_id": _matches(_UUID),
    "time": _is_int,
    "$insert_id": _matches(_HEX32),
    "schema": _is_int,
    "action": _one_of(ACTIONS),
    "outcome": _one_of(OUTCOMES),
    "duration_s": lambda value: isinstance(value, float),
    "failed_step": _optional(_matches(_IDENTIFIER)),
    "error_code": _optional(_one_of(ERROR_CODES)),
    "error_type": _optional(_matches(_IDENTIFIER)),
    "missing_requirements": _is_identifier_list,
    "options": _is_identifier_list,
    "login_success": lambda value: value in (True, False, None),
    "installer_version": _matches(_VERSION_LIKE),
    "product_version": _optional(_matches(_VERSION_LIKE)),
    "python_version": _matches(_VERSION_LIKE),
    "python_implementation": _matches(_IDENTIFIER),
    "os": _matches(_VERSION_LIKE),
    "os_release": _optional(_matches(_VERSION_LIKE)),
    "os_distro": _optional(_matches(_VERSION_LIKE)),
    "os_distro_version": _optional(_matches(_VERSION_LIKE)),
    "arch": _optional(_matches(_VERSION_LIKE)),
    "package_engine": _optional(_one_of(("uv", "pip"))),
    "launched_by": _one_of(LAUNCHERS),
    "ci": lambda value: isinstance(value, bool),
    "ci_provider": _optional(_one_of([name for _, name in CI_PROVIDERS])),
    "context": _matches(_CONTEXT),
    "first_run": lambda value: isinstance(value, bool),
    "utc_offset": _matches(_UTC_OFFSET),
}
ENVIRONMENT_PROPERTIES = (
    "token",
    "distinct_id",
    "time",
    "$insert_id",
    "schema",
    "installer_version",
    "python_version",
    "python_implementation",
    "os",
    "os_release",
    "os_distro",
    "os_distro_version",
    "arch",
    "launched_by",
    "ci",
    "ci_provider",
    "context",
    "utc_offset",
)

ANALYTICS_NOTICE = f"""\
dk-installer sends anonymous usage analytics to DataKitchen (via Mixpanel) so the maintainers
can see which actions run, on which Python and OS, where installs fail and whether the login
works. Sent: the action and its outcome, the NAMES of options you set, error codes, versions,
a random id. Never sent: values you typed, paths, user or host names, IP addresses, passwords,
error messages. Events are sent in the background and never slow the installer down.
TestGen has analytics of its own (it sends its own events, including its user names); they
follow this choice: turning analytics off here turns TestGen's off too.
Turn it off with any of:
  --no-analytics                      for one run
  DO_NOT_TRACK=1                      environment variable
  DK_INSTALLER_ANALYTICS=no           environment variable
  dk_installer.py analytics disable   saved, also deletes the id and unsent events
See exactly what is sent: dk_installer.py analytics preview. Details: {PRIVACY_URL}
"""


@dataclasses.dataclass
class ActionResult:
    """What the action boundary knows when an action ends; the analytics event is made from it."""

    action: str
    options: list[str]
    outcome: str = "success"
    duration_s: float = 0.0
    failed_step: str | None = None
    error_code: str | None = None
    error_type: str | None = None
    missing_requirements: list[str] = dataclasses.field(default_factory=list)
    login_success: bool | None = None
    product_version: str | None = None
    package_engine: str | None = None


def analytics_consent(paths: Paths, settings: Settings, no_analytics_flag: bool) -> tuple[bool, str]:
    """(enabled, the rule that decided). Any one opt-out wins over every opt-in."""
    if no_analytics_flag:
        return False, "--no-analytics"
    if settings.do_not_track:
        return False, "DO_NOT_TRACK"
    if settings.analytics_opt_out:
        return False, "DK_INSTALLER_ANALYTICS"
    saved = UserSettings(paths.settings).get("analytics")
    if saved == "disabled":
        return False, "saved setting (analytics disable)"
    if saved == "enabled":
        return True, "saved setting (analytics enable)"
    return True, "default"


def _utc_offset() -> str:
    offset = datetime.datetime.now().astimezone().utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _distro_properties() -> dict[str, Any]:
    try:
        import distro

        # distro.id() would also run `lsb_release -a` and `uname`: 15+ ms of subprocesses for the
        # same answer that /etc/os-release gives (bench/analytics_overhead.py).
        info = distro.LinuxDistribution(include_lsb=False, include_uname=False, include_oslevel=False)
        return {"os_distro": info.id() or None, "os_distro_version": info.version() or None}
    except Exception:
        log.debug("analytics: distro unavailable", exc_info=True)
        return {"os_distro": None, "os_distro_version": None}


def environment_properties(distinct_id: str, settings: Settings) -> dict[str, Any]:
    import platform
    import uuid

    props: dict[str, Any] = {
        "token": settings.analytics_token,
        "distinct_id": distinct_id,
        "time": int(time.time() * 1000),
        "$insert_id": uuid.uuid4().hex,
        "schema": ANALYTICS_SCHEMA,
        "installer_version": __version__,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": platform.system(),
        "os_release": platform.release() or None,
        **_distro_properties(),
        "arch": platform.machine() or None,
        "launched_by": settings.launched_by,
        "ci": settings.ci,
        "ci_provider": settings.ci_provider,
        "utc_offset": _utc_offset(),
    }
    if settings.context:
        props["context"] = settings.context
    return props


def allowed_properties(props: dict[str, Any]) -> dict[str, Any]:
    """Apply the allow-list: unknown keys are dropped, values failing their check become null."""
    clean: dict[str, Any] = {}
    for key, value in props.items():
        check = EVENT_SCHEMA.get(key)
        if check is not None:
            clean[key] = value if check(value) else None
    return clean


def build_event(
    result: ActionResult, distinct_id: str, first_run: bool, settings: Settings
) -> dict[str, Any]:
    props = environment_properties(distinct_id, settings)
    props.update(
        action=result.action,
        outcome=result.outcome,
        duration_s=round(float(result.duration_s), 1),
        failed_step=result.failed_step,
        error_code=result.error_code,
        error_type=result.error_type,
        missing_requirements=list(result.missing_requirements),
        options=sorted(result.options),
        login_success=result.login_success,
        product_version=result.product_version,
        package_engine=result.package_engine,
        first_run=first_run,
    )
    return {"event": result.action, "properties": allowed_properties(props)}


def build_bootstrap_event(distinct_id: str, settings: Settings) -> dict[str, Any]:
    props = environment_properties(distinct_id, settings)
    return {
        "event": "bootstrap",
        "properties": allowed_properties({key: props[key] for key in ENVIRONMENT_PROPERTIES if key in props}),
    }


class Spool:
    """Events waiting to be sent, one JSON object per line, capped in count, size and age."""

    def __init__(self, paths: Paths) -> None:
        self.path = paths.spool
        self.lock_path = paths.spool_lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        import fcntl

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and isinstance(event.get("properties"), dict):
                    events.append(event)
        return events

    @staticmethod
    def _prune(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        oldest = (time.time() - SPOOL_MAX_AGE_S) * 1000
        kept = [
            e
            for e in events
            if isinstance(e["properties"].get("time"), int) and e["properties"]["time"] >= oldest
        ][-SPOOL_MAX_EVENTS:]
        while kept and sum(len(json.dumps(e)) + 1 for e in kept) > SPOOL_MAX_BYTES:
            kept.pop(0)
        return kept

    def _write(self, events: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        write_file_atomically(self.path, text, mode=0o600)

    def append(self, new: list[dict[str, Any]]) -> None:
        with self.locked():
            self._write(self._prune(self._read() + new))

    def pending(self) -> list[dict[str, Any]]:
        with self.locked():
            events = self._prune(self._read())
            self._write(events)
            return events

    def remove(self, insert_ids: set[str]) -> None:
        with self.locked():
            self._write([e for e in self._read() if e["properties"].get("$insert_id") not in insert_ids])


class SenderState:
    """The circuit breaker and the last send result, shared by the sender and `analytics status`."""

    def __init__(self, paths: Paths) -> None:
        self.path = paths.sender_state
        self.values = read_json_object(self.path)

    @property
    def paused(self) -> bool:
        return float(self.values.get("paused_until", 0)) > time.time()

    def record(self, delivered: bool, result: str) -> None:
        failures = 0 if delivered else int(self.values.get("failures", 0)) + 1
        self.values.update(failures=failures, last_result=result, last_attempt=now_iso())
        if failures >= BREAKER_FAILURES:
            self.values.update(paused_until=time.time() + BREAKER_PAUSE_S, failures=0)
        write_file_atomically(self.path, json.dumps(self.values) + "\n", mode=0o600)


def _append_history(paths: Paths, events: list[dict[str, Any]], result: str) -> None:
    path = paths.history
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
    lines += [json.dumps({"attempted": now_iso(), "result": result, "event": e}) for e in events]
    write_file_atomically(path, "".join(line + "\n" for line in lines[-HISTORY_KEPT:]), mode=0o600)


def read_history(paths: Paths) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in paths.history.read_text().splitlines()]
    except (OSError, ValueError):
        return []


def _sender_running(lock_path: Path) -> bool:
    import fcntl

    try:
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


def _start_sender(paths: Paths) -> None:
    if SenderState(paths).paused or _sender_running(paths.sender_lock):
        return
    if not os.path.exists(sys.executable):
        return  # uninstall removed the runtime: the spool waits for the next run
    subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "analytics", "send-spool"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def record_event(result: ActionResult, paths: Paths, settings: Settings, no_analytics_flag: bool) -> None:
    """THE analytics entry point. Never raises, never waits for the network."""
    try:
        with deferred_signals():
            _record_event(result, paths, settings, no_analytics_flag)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.debug("analytics: recording failed", exc_info=True)


def _record_event(result: ActionResult, paths: Paths, settings: Settings, no_analytics_flag: bool) -> None:
    import uuid

    enabled, _rule = analytics_consent(paths, settings, no_analytics_flag)
    if not enabled:
        return
    saved = UserSettings(paths.settings)
    distinct_id = saved.get("anonymous_id")
    if not (isinstance(distinct_id, str) and _UUID.match(distinct_id)):
        distinct_id = str(uuid.uuid4())
        saved.update(anonymous_id=distinct_id)
    events = []
    bootstrap_ping = settings.launched_by == "install.sh" and not saved.get("bootstrap_sent")
    if bootstrap_ping:
        events.append(build_bootstrap_event(distinct_id, settings))
    first_run = not saved.get("first_event_recorded")
    events.append(build_event(result, distinct_id, first_run, settings))
    if settings.analytics_debug:
        for event in events:
            click.echo("analytics debug (not sent): " + json.dumps(event, sort_keys=True), err=True)
        return
    Spool(paths).append(events)
    changes = {"first_event_recorded": True, "bootstrap_sent": bootstrap_ping or None}
    changes = {key: value for key, value in changes.items() if value and not saved.get(key)}
    if changes:
        saved.update(**changes)
    _start_sender(paths)


def show_notice_once(paths: Paths, enabled: bool) -> None:
    """The notice, before the first step of the first action (where it is read, not under an
    error message at the end), and once more whenever NOTICE_VERSION changes. Never raises."""
    if not enabled:
        return
    try:
        saved = UserSettings(paths.settings)
        if saved.get("notice_version") != NOTICE_VERSION:
            echo(ANALYTICS_NOTICE, err=True)
            saved.update(notice_version=NOTICE_VERSION)
    except OSError:
        log.debug("analytics: the notice could not be recorded", exc_info=True)


def send_spool(paths: Paths, settings: Settings) -> None:
    """The detached sender's whole life: at most SENDER_LIFETIME_S, at most one at a time."""
    import fcntl

    signal.alarm(SENDER_LIFETIME_S)  # SIGALRM's default action ends the process, even inside DNS
    paths.analytics.mkdir(parents=True, exist_ok=True)
    with open(paths.sender_lock, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        spool = Spool(paths)
        sent: set[str] = set()
        while True:
            events = [e for e in spool.pending() if e["properties"].get("$insert_id") not in sent]
            state = SenderState(paths)
            if not events or state.paused:
                return
            delivered, result = _post_events(events, settings)
            state.record(delivered, result)
            _append_history(paths, events, result)
            if not delivered:
                return
            ids = {str(e["properties"].get("$insert_id")) for e in events}
            spool.remove(ids)
            sent |= ids


def _post_events(events: list[dict[str, Any]], settings: Settings) -> tuple[bool, str]:
    import requests

    base = settings.analytics_url
    body = json.dumps(
        [{"event": e["event"], "properties": allowed_properties(e["properties"])} for e in events]
    )
    try:
        response = requests.post(
            f"{base}/track",
            params={"ip": "0", "verbose": "1"},
            data=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"dk-installer/{__version__}",
            },
            timeout=SEND_TIMEOUT_S,
            verify=https_verify(settings),
        )
    except requests.RequestException as exc:
        return False, f"failed: {type(exc).__name__}"
    if response.status_code != 200:
        return False, f"failed: HTTP {response.status_code}"
    text = response.text.strip()
    try:
        accepted = text == "1" or json.loads(text).get("status") == 1
    except (ValueError, AttributeError):
        accepted = False
    return (True, "delivered") if accepted else (False, "failed: rejected by the collector")


# ---------------------------------------------------------------------------------------------
# 6. TestGen: its venv, CLI, processes and HTTP endpoints
# ---------------------------------------------------------------------------------------------

PACKAGE = "dataops-testgen"
PACKAGE_EXTRA = "standalone"
DEFAULT_VERSION_SPEC = ">=5,<6"
TESTGEN_MIN_PYTHON = (3, 11)
UV_PYTHON = "3.12"  # what uv downloads when the machine has no Python 3.11+
ADMIN_USERNAME = "admin"
STOP_TIMEOUT_S = 60.0
HTTP_PROBE_TIMEOUT_S = 2.0
# Set in the environment of every TestGen process the installer starts, and inherited by their
# children (PostgreSQL included): how stop() tells our processes from a `testgen` the user runs.
OWNER_VARIABLE = "DK_INSTALLER_TESTGEN"
_VERSION_NUMBER = re.compile(r"^\d+(\.\d+)*([abc]|rc|\.post|\.dev)?\d*$")
_VERSION_SPECIFIER = re.compile(
    r"^(==|!=|<=|>=|~=|<|>)\s*[0-9][0-9A-Za-z.*+!]*(\s*,\s*(==|!=|<=|>=|~=|<|>)"
    r"\s*[0-9][0-9A-Za-z.*+!]*)*$"
)


def version_specifier(requested: str | None) -> str:
    """'5.92.2' -> '==5.92.2'; '>=5.90,<6' stays; None -> newest 5.x."""
    if not requested:
        return DEFAULT_VERSION_SPEC
    requested = requested.strip()
    if _VERSION_NUMBER.match(requested):
        return f"=={requested}"
    if _VERSION_SPECIFIER.match(requested):
        return requested.replace(" ", "")
    raise click.BadParameter(f"'{requested}' is neither a version (5.92.2) nor a specifier (>=5.90,<6).")


def installed_version(venv: Path) -> str | None:
    """The TestGen version installed in `venv`, or None when there is none that runs."""
    python = venv_bin(venv, "python")
    if not os.path.exists(python):
        return None
    try:
        out = subprocess.run(
            [python, "-c", f"from importlib.metadata import version; print(version('{PACKAGE}'))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


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


def http_status(url: str, context: Any = None, timeout: float = HTTP_PROBE_TIMEOUT_S) -> int | None:
    """The HTTP status of a GET, or None when nothing answers. Stdlib only: this runs in `status`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def is_loopback(address: str) -> bool:
    import ipaddress

    return address == "localhost" or ipaddress.ip_address(address).is_loopback


def shared_host_names(listen: str) -> list[str]:
    """The names and addresses other machines can use to reach this one when TestGen listens on
    `listen`: the host's names and non-loopback addresses for all addresses, else that address."""
    import socket

    if listen != ALL_ADDRESSES:
        return [listen]
    names = [socket.getfqdn(), socket.gethostname()]
    with contextlib.suppress(OSError):
        names += socket.gethostbyname_ex(socket.gethostname())[2]
    reachable = [
        name
        for name in names
        if name and not name.startswith(("127.", "localhost")) and name not in ("::1", "ip6-localhost")
    ]
    return list(dict.fromkeys(reachable)) or [socket.gethostname()]


def address_of_this_machine(address: str) -> bool:
    """Can TestGen listen on `address` here (the wildcard, or an address a local interface has)?"""
    import socket

    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except (OSError, ValueError):
        return False
    return True


def tls_verifying_context(cert: Path) -> Any:
    """Verify TestGen's HTTPS against the certificate the installer installed: the chain must
    lead to it (a CA-issued leaf is trusted as given); the name is not checked, since the probes
    go to a loopback address that the certificate need not name."""
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    return context


SERVICE_NAME = "dk-installer-testgen"
LAUNCHD_LABEL = "com.datakitchen.dk-installer-testgen"


class ServiceManager:
    """The user's service manager, which starts TestGen at boot through `dk_installer.py run`:
    systemd's user instance on Linux, launchd on macOS."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.launchd = sys.platform == "darwin"

    @property
    def unit_path(self) -> Path:
        return self.paths.launchd_plist if self.launchd else self.paths.systemd_unit

    def _command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        tool = ["launchctl", *args] if self.launchd else ["systemctl", "--user", *args]
        log.info("$ %s", " ".join(tool))
        try:
            result = subprocess.run(
                tool, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise InstallerError(f"`{' '.join(tool)}` could not run ({type(exc).__name__}).") from None
        if check and result.returncode != 0:
            raise InstallerError(
                f"`{' '.join(tool)}` failed (exit code {result.returncode}).", details=result.stderr.strip()
            )
        return result

    def unusable_reason(self) -> str | None:
        """None when the service manager can be used, else why not (containers, WSL1, no bus)."""
        tool = "launchctl" if self.launchd else "systemctl"
        if not shutil.which(tool):
            return f"there is no `{tool}` on this machine"
        probe = ("print", f"gui/{os.getuid()}") if self.launchd else ("show-environment",)
        if self._command(*probe, check=False).returncode != 0:
            return (
                f"`{tool}` cannot reach your user's service manager here (a container, WSL1, or a "
                "session without one)"
            )
        return None

    def definition(self, command: list[str], paths: Paths) -> str:
        """The unit (or launchd agent) that runs `command` and restarts it when it fails. The
        service does not see the shell's environment: the saved analytics setting governs it."""
        environment = {"DK_INSTALLER_HOME": str(paths.home), "XDG_CONFIG_HOME": str(paths.config.parent)}
        if self.launchd:
            import plistlib

            return plistlib.dumps(
                {
                    "Label": LAUNCHD_LABEL,
                    "ProgramArguments": command,
                    "EnvironmentVariables": environment,
                    "RunAtLoad": True,
                    "KeepAlive": {"SuccessfulExit": False},
                    # `run`'s own lines; TestGen's output has its rotating writer (testgen-app.log).
                    "StandardOutPath": str(paths.logs / "service.log"),
                    "StandardErrorPath": str(paths.logs / "service.log"),
                }
            ).decode()
        import shlex

        lines = [
            "[Unit]",
            "Description=DataOps TestGen (installed by dk-installer)",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            "ExecStart=" + " ".join(shlex.quote(part) for part in command),
            *(f'Environment="{key}={value}"' for key, value in environment.items()),
            "Restart=on-failure",
            "RestartSec=5",
            # `run` stops TestGen and its PostgreSQL in order on SIGTERM; the rest of the group is
            # killed only if that takes longer than TimeoutStopSec.
            "KillMode=mixed",
            "TimeoutStopSec=120",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
        return "\n".join(lines)

    def installed(self) -> bool:
        return self.unit_path.exists()

    def active(self) -> bool:
        if not self.installed():
            return False
        if self.launchd:
            return self._command("print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}", check=False).returncode == 0
        return self._command("is-active", "--quiet", f"{SERVICE_NAME}.service", check=False).returncode == 0

    def enable(self, definition: str) -> None:
        write_file_atomically(self.unit_path, definition)
        if self.launchd:
            self._command("bootstrap", f"gui/{os.getuid()}", str(self.unit_path))
        else:
            self._command("daemon-reload")
            self._command("enable", "--now", f"{SERVICE_NAME}.service")

    def disable(self) -> None:
        if self.launchd:
            self._command("bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}", check=False)
        else:
            self._command("disable", "--now", f"{SERVICE_NAME}.service", check=False)
        with contextlib.suppress(FileNotFoundError):
            self.unit_path.unlink()
        if not self.launchd:
            self._command("daemon-reload", check=False)

    def start(self) -> None:
        if self.launchd:
            self._command("kickstart", f"gui/{os.getuid()}/{LAUNCHD_LABEL}")
        else:
            self._command("start", f"{SERVICE_NAME}.service")

    def stop(self) -> None:
        if self.launchd:
            self._command("kill", "SIGTERM", f"gui/{os.getuid()}/{LAUNCHD_LABEL}", check=False)
        else:
            self._command("stop", f"{SERVICE_NAME}.service")

    def linger_hint(self) -> str | None:
        """systemd starts a user's services at boot only with lingering on."""
        if self.launchd or not shutil.which("loginctl"):
            return None
        import getpass

        user = getpass.getuser()
        try:
            out = subprocess.run(
                ["loginctl", "show-user", user, "--property=Linger"],
                capture_output=True,
                text=True,
                timeout=15,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if "Linger=yes" in out:
            return None
        return (
            "TestGen now starts when you log in. To start it at boot without a login, run once:\n"
            f"  sudo loginctl enable-linger {user}"
        )


def _alive(process: Any) -> bool:
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class TestGen:
    """Everything the installer does with an installed TestGen: run its CLI, start, stop and
    probe the app, find its processes, read and write its config. Made from the install receipt
    (or, before there is one, from the install options)."""

    def __init__(
        self,
        paths: Paths,
        settings: Settings,
        ui_port: int,
        api_port: int,
        analytics_enabled: bool,
        listen: str = LOOPBACK,
        tls: bool = False,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.ui_port = ui_port
        self.api_port = api_port
        self.analytics_enabled = analytics_enabled
        self.listen = listen
        self.tls = tls
        self.config = TestGenConfig(paths.config_env)
        self.service = ServiceManager(paths)

    @classmethod
    def from_receipt(
        cls, paths: Paths, settings: Settings, state: InstallState, analytics_enabled: bool
    ) -> TestGen:
        return cls(paths, settings, state.ui_port, state.api_port, analytics_enabled, state.listen, state.tls)

    @property
    def shared(self) -> bool:
        return not is_loopback(self.listen)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, port: int) -> str:
        """How people reach a port: this host's name when shared, else localhost."""
        host = shared_host_names(self.listen)[0] if self.shared else "localhost"
        return f"{self.scheme}://{host}:{port}"

    @property
    def ui_url(self) -> str:
        return self.url(self.ui_port)

    @property
    def api_url(self) -> str:
        return self.url(self.api_port)

    @property
    def api_docs_url(self) -> str:
        return f"{self.api_url}/api/docs"

    @property
    def mcp_url(self) -> str:
        """TestGen's MCP server (streamable HTTP), served by its API."""
        return f"{self.api_url}/mcp"

    def probe_url(self, port: int) -> str:
        """Where the installer itself checks a port: an address the listen address serves."""
        host = LOOPBACK if self.listen in (ALL_ADDRESSES, "localhost") else self.listen
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"

    def tls_context(self) -> Any:
        return tls_verifying_context(self.paths.tls_cert) if self.tls else None

    def program(self, name: str) -> Path:
        return Path(venv_bin(self.paths.venv, name))

    def environment(self) -> dict[str, str]:
        """The environment of every TestGen process. HOME, XDG_RUNTIME_DIR and the log path point
        inside DK_INSTALLER_HOME so that TestGen, Streamlit and pgserver write nothing elsewhere."""
        env = dict(os.environ)
        home = self.paths.testgen_home
        # pgserver keeps its lock in $XDG_RUNTIME_DIR/python_PostgresServer if that exists, else in
        # /tmp; platformdirs accepts XDG_RUNTIME_DIR only when it is 0700 (mkdir's mode does not
        # change a folder that exists, hence the chmod).
        for private in (self.paths.run_dir, self.paths.run_dir / "python_PostgresServer", self.paths.tmp):
            private.mkdir(parents=True, exist_ok=True, mode=0o700)
            private.chmod(0o700)
        env.update(
            TG_TESTGEN_HOME=str(home),
            TG_UI_PORT=str(self.ui_port),
            TG_API_PORT=str(self.api_port),
            TESTGEN_LOG_FILE_PATH=str(self.paths.testgen_logs),
            HOME=str(home),
            XDG_RUNTIME_DIR=str(self.paths.run_dir),
            TMPDIR=str(self.paths.tmp),
            PATH=f"{self.program('')}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(self.paths.venv),
        )
        env[OWNER_VARIABLE] = str(self.paths.testgen)
        # Where the UI (Streamlit), the API and MCP listen; links, the OAuth flow and MCP clients
        # from other machines need the shared names.
        env["STREAMLIT_SERVER_ADDRESS"] = self.listen
        env["TG_API_HOST"] = self.listen
        if self.shared:
            env["TG_UI_BASE_URL"] = self.ui_url
            env["TG_BASE_URL"] = self.api_url
            env["TG_MCP_EXTRA_ALLOWED_HOSTS"] = ",".join(shared_host_names(self.listen))
        if not self.analytics_enabled:
            env["TG_ANALYTICS"] = "no"
        if self.settings.analytics_url != ANALYTICS_BASE_URL:
            # A self-hosted collector gets TestGen's events too: nothing goes around it.
            env["TG_MIXPANEL_URL"] = self.settings.analytics_url
        # setup copies SSL_CERT_FILE/SSL_KEY_FILE into config.env, where they would switch TestGen
        # to TLS; a CA bundle in the user's environment is not meant for that.
        for name in ("SSL_CERT_FILE", "SSL_KEY_FILE", "PYTHONHOME", "PYTHONPATH"):
            env.pop(name, None)
        return env

    def cli(
        self,
        subcommand: str,
        *,
        progress: Progress | None = None,
        stdin_text: str | None = None,
        timeout: float | None = None,
        error_code: ErrorCode = ErrorCode.SUBPROCESS_FAILED,
        extra_env: Mapping[str, str] | None = None,
    ) -> str:
        """The one way to run a `testgen` command: TestGen's environment, logged, redacted."""
        return run_command(
            [str(self.program("testgen")), subcommand],
            env={**self.environment(), **(extra_env or {})},
            stdin_text=stdin_text,
            progress=progress,
            timeout=timeout,
            error_code=error_code,
            what=f"testgen {subcommand}",
        )

    def patch_streamlit(self, progress: Progress) -> None:
        """Versions that ship tg-patch-streamlit need it run after every package change."""
        patcher = self.program("tg-patch-streamlit")
        if patcher.exists():
            run_command(
                [str(patcher)],
                env=self.environment(),
                progress=progress,
                error_code=ErrorCode.UPGRADE_FAILED,
                what="tg-patch-streamlit",
            )

    # Processes
    def app_process(self) -> Any:
        """The run-app process this installer started (a psutil.Process), or None."""
        import psutil

        try:
            pid_text, started_text = self.paths.app_pid.read_text().split()
            process = psutil.Process(int(pid_text))
            if abs(process.create_time() - float(started_text)) > 1:
                return None  # the pid was reused by another process
        except (OSError, ValueError, psutil.Error):
            return None
        return process if _alive(process) else None

    def postmaster(self) -> Any:
        """The embedded PostgreSQL's postmaster (from pgdata/postmaster.pid), or None."""
        import psutil

        try:
            process = psutil.Process(int((self.paths.pgdata / "postmaster.pid").read_text().split()[0]))
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return process if _alive(process) else None

    def processes(self) -> list[Any]:
        """Every process of ours, orphans included: the app's tree, the postmaster's tree, and any
        process that carries OWNER_VARIABLE for this install. Never a `testgen` the user runs."""
        import psutil

        ours: dict[int, Any] = {}
        for root in (self.app_process(), self.postmaster()):
            if root is not None:
                with contextlib.suppress(psutil.Error):
                    for process in [root, *root.children(recursive=True)]:
                        ours[process.pid] = process
        owner = str(self.paths.testgen)
        for process in psutil.process_iter(["environ"]):
            if (process.info.get("environ") or {}).get(OWNER_VARIABLE) == owner:
                ours.setdefault(process.pid, process)
        ours.pop(os.getpid(), None)
        return [process for process in ours.values() if _alive(process)]

    def running(self) -> bool:
        """Is the app this installer started still running? (health() says whether it answers)"""
        return self.app_process() is not None

    def health(self) -> dict[str, bool]:
        context = self.tls_context()
        return {
            "ui": http_status(f"{self.probe_url(self.ui_port)}/_stcore/health", context) == 200,
            "api": http_status(f"{self.probe_url(self.api_port)}/api/v1/health", context) == 200,
        }

    def serving(self) -> bool:
        """Running and answering: what `install` and `start` take as "nothing to do"."""
        return self.running() and all(self.health().values())

    def start(self, progress: Progress) -> None:
        """Start TestGen and return once the UI and the API answer: through the service manager
        when TestGen is a service (never beside it), else run-app detached in its own session."""
        if self.service.installed():
            progress.update("starting the service")
            self.service.start()
            self.wait_until_serving(None, progress)
        else:
            self.wait_until_serving(self.launch(), progress)

    def launch(self) -> subprocess.Popen[bytes]:
        """run-app in its own session, output appended to logs/testgen-app.log, pid recorded."""
        paths = self.paths
        paths.logs.mkdir(parents=True, exist_ok=True)
        environment = self.environment()
        # TestGen keeps its output open as long as it runs, so the log is rotated by the process
        # that writes it: a small pump of ours between run-app's output and the file.
        pump = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "log-pump", str(paths.app_log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, OWNER_VARIABLE: environment[OWNER_VARIABLE]},
            start_new_session=True,
        )
        assert pump.stdin is not None
        with pump.stdin:
            pump.stdin.write(f"\n--- dk-installer starting TestGen at {now_iso()} ---\n".encode())
            pump.stdin.flush()
            process = subprocess.Popen(
                [str(self.program("testgen")), "run-app"],
                stdin=subprocess.DEVNULL,
                stdout=pump.stdin,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=paths.testgen_home,
                start_new_session=True,
            )
        import psutil

        with contextlib.suppress(psutil.Error):
            write_file_atomically(
                paths.app_pid, f"{process.pid} {psutil.Process(process.pid).create_time()}\n"
            )
        log.info("run-app started, pid %s", process.pid)
        return process

    def wait_until_serving(self, process: subprocess.Popen[bytes] | None, progress: Progress) -> None:
        paths = self.paths
        limit = self.settings.start_timeout_s
        deadline = time.monotonic() + limit
        while True:
            health = self.health()
            if all(health.values()):
                return
            if process is not None and process.poll() is not None:
                raise InstallerError(
                    f"TestGen exited during start-up (exit code {process.returncode}).",
                    code=ErrorCode.START_FAILED,
                    details=file_tail(paths.app_log, 15),
                )
            if time.monotonic() > deadline:
                raise InstallerError(
                    f"TestGen did not answer within {limit:.0f}s.",
                    code=ErrorCode.START_FAILED,
                    details=file_tail(paths.app_log, 15),
                )
            waiting = " and ".join(part.upper() for part, up in health.items() if not up)
            progress.update(f"waiting for the {waiting} to answer")
            time.sleep(0.5)

    def stop(self, progress: Progress | None = None, through_service: bool = True) -> bool:
        """Stop run-app, then whatever of ours it left behind, then the embedded PostgreSQL (its
        "fast" shutdown). Returns True if something was running. `run` itself, which may be what
        the service runs, passes through_service=False."""
        import psutil

        def say(text: str) -> None:
            if progress:
                progress.update(text)

        def end(processes: list[Any], sig: int, grace: float) -> list[Any]:
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
            return psutil.wait_procs(processes, timeout=grace)[1]

        was_running = False
        if through_service and self.service.active():
            # The service manager would start it again: it stops it (`run` then stops TestGen).
            was_running = True
            say("stopping the service")
            self.service.stop()
        app = self.app_process()
        if app is not None:
            was_running = True
            say("asking TestGen to shut down")
            end([app], signal.SIGTERM, STOP_TIMEOUT_S)
        # run-app's children run in sessions of their own and outlive a killed parent.
        postmaster = self.postmaster()
        database: set[int] = set()
        if postmaster is not None:
            with contextlib.suppress(psutil.Error):
                database = {postmaster.pid, *(child.pid for child in postmaster.children(recursive=True))}
        leftovers = [process for process in self.processes() if process.pid not in database]
        if leftovers:
            was_running = True
            say(f"stopping {len(leftovers)} leftover TestGen process(es)")
            end(end(leftovers, signal.SIGTERM, 15), signal.SIGKILL, 5)
        postmaster = self.postmaster()
        if postmaster is not None:
            was_running = True
            say("stopping the embedded PostgreSQL")
            end(end([postmaster], signal.SIGINT, 30), signal.SIGQUIT, 10)
        handles = self.paths.pgdata / ".handle_pids.json"
        if handles.exists():
            with contextlib.suppress(OSError):
                handles.write_text("[]")  # stale handles would stop later clean shutdowns from stopping PG
        with contextlib.suppress(OSError):
            self.paths.app_pid.unlink()
        remaining = [process.pid for process in self.processes()]
        if remaining:
            raise InstallerError(f"Could not stop TestGen processes {remaining}.", code=ErrorCode.STOP_FAILED)
        return was_running

    def login(self, username: str, password: str) -> bool | None:
        """A real login through TestGen's OAuth flow: register a public client, then POST the
        credentials to /oauth/authorize with a PKCE challenge. True on a redirect carrying a code,
        False on 401, None when this TestGen has no OAuth endpoints."""
        import base64
        import hashlib
        import secrets
        import urllib.parse

        import requests

        base = self.probe_url(self.api_port)
        redirect_uri = "http://localhost:8765/dk-installer/callback"
        session = requests.Session()
        session.trust_env = False  # a local address: never through a proxy
        if self.tls:
            session.mount("https://", tls_adapter(self.tls_context()))
        registration = session.post(
            f"{base}/oauth/register",
            json={
                "client_name": "dk-installer login check",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "none",
            },
            timeout=15,
        )
        if registration.status_code in (404, 405):
            return None
        if registration.status_code not in (200, 201):
            raise InstallerError(
                f"TestGen's /oauth/register answered HTTP {registration.status_code}.",
                code=ErrorCode.LOGIN_FAILED,
            )
        client_id = registration.json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        state = secrets.token_urlsafe(8)
        response = session.post(
            f"{base}/oauth/authorize",
            data={
                "username": username,
                "password": password,
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            allow_redirects=False,
            timeout=15,
        )
        if response.status_code == 401:
            return False
        if response.status_code in (302, 303):
            query = urllib.parse.parse_qs(urllib.parse.urlparse(response.headers.get("location", "")).query)
            return bool(query.get("code")) and query.get("state") == [state]
        raise InstallerError(
            f"TestGen's /oauth/authorize answered HTTP {response.status_code}.", code=ErrorCode.LOGIN_FAILED
        )


def tls_adapter(context: Any) -> Any:
    """A requests transport adapter that uses our SSLContext (requests has no option for one;
    defined on use because requests is imported lazily)."""
    import requests.adapters

    class ContextAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["ssl_context"] = context
            return super().init_poolmanager(*args, **kwargs)

    return ContextAdapter()


def pump_rotating_log(source: Any, path: Path, max_bytes: int, kept: int) -> None:
    """Copy lines from `source` to `path` until it ends; once the file reaches `max_bytes`, it
    becomes path.1 (path.1 becomes path.2, ...; `kept` old files stay) and a new one starts."""
    out = open(path, "ab")  # noqa: SIM115 (reopened on every rotation)
    try:
        for line in iter(source.readline, b""):
            out.write(line)
            out.flush()
            if out.tell() >= max_bytes:
                out.close()
                for index in range(kept - 1, 0, -1):
                    older = path.with_name(f"{path.name}.{index}")
                    if older.exists():
                        os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
                os.replace(path, path.with_name(f"{path.name}.1"))
                out = open(path, "ab")  # noqa: SIM115
    finally:
        out.close()


def port_free(port: int) -> bool:
    """True when nothing listens on the port, on any address (TestGen binds 0.0.0.0)."""
    import errno
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
    return True


# ---------------------------------------------------------------------------------------------
# 7. Steps
#
# A step is one visible unit of work. run() does it (raising StepSkipped when there is nothing to
# do); undo() reverses whatever part of it happened and must be safe to call after a partial run;
# commit() drops what undo() would have needed, once the whole action has succeeded. run_steps()
# undoes the failed step and every completed one, newest first, on any failure, Ctrl+C or
# SIGTERM, with further signals deferred until the rollback is done.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class InstallOptions:
    ui_port: int = DEFAULT_UI_PORT
    api_port: int = DEFAULT_API_PORT
    version: str | None = None
    index_url: str | None = None
    find_links: str | None = None
    python: str | None = None
    demo: bool = True
    start: bool = True
    browser: bool = True
    assume_yes: bool = False
    listen: str = LOOPBACK
    ssl_cert: Path | None = None
    ssl_key: Path | None = None


@dataclasses.dataclass
class ActionContext:
    """What one action's steps share. When the action ends, the action boundary reads the
    analytics facts from here (step, checks, versions, engine, login)."""

    paths: Paths
    settings: Settings
    console: Console
    analytics_enabled: bool
    options: InstallOptions = dataclasses.field(default_factory=InstallOptions)
    state: InstallState | None = None
    python: str | None = None
    python_version: str | None = None
    engine: PackageEngine | None = None
    password: str | None = None
    kept_data: bool = False
    was_running: bool = False
    started_app: bool = False
    action: str = ""
    step: str | None = None
    checks: list[Requirement] = dataclasses.field(default_factory=list)
    installed_version: str | None = None
    login_success: bool | None = None
    _testgen: TestGen | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.journal = Journal(self.paths)

    @property
    def testgen(self) -> TestGen:
        """The TestGen this action works on: from the receipt once there is one, else from the
        install options."""
        if self._testgen is None:
            if self.state:
                self._testgen = TestGen.from_receipt(
                    self.paths, self.settings, self.state, self.analytics_enabled
                )
            else:
                self._testgen = TestGen(
                    self.paths,
                    self.settings,
                    self.options.ui_port,
                    self.options.api_port,
                    self.analytics_enabled,
                    self.options.listen,
                    self.options.ssl_cert is not None,
                )
        return self._testgen

    def use_receipt(self, state: InstallState) -> None:
        self.state = state
        self._testgen = None

    @property
    def product_version(self) -> str | None:
        return self.installed_version or (self.state.product_version if self.state else None)

    @property
    def package_engine(self) -> str | None:
        return self.engine.name if self.engine else (self.state.package_engine if self.state else None)

    def self_command(self) -> str:
        return self_command(self.settings, self.paths)


class Journal:
    """What a mutating action is doing: written atomically before each step with side effects and
    removed once the action has succeeded or been rolled back. A journal that the next command
    finds means the action was killed (SIGKILL, power loss): recover_interrupted_action() then puts
    back what was there before it, or, for uninstall and a commit in progress, finishes it."""

    def __init__(self, paths: Paths, values: dict[str, Any] | None = None) -> None:
        self.paths = paths
        self.values: dict[str, Any] = values or {}

    @classmethod
    def found(cls, paths: Paths) -> Journal | None:
        if not paths.journal.exists():
            return None
        # A journal that cannot be read still means an interrupted action; what it does not say is
        # taken the safe way in roll_back_to_journal (keep the data).
        return cls(paths, read_json_object(paths.journal) or {"action": "install"})

    @property
    def active(self) -> bool:
        return bool(self.values)

    def begin(self, action: str, running: bool) -> None:
        """Remember what existed before the action changed anything, and whether TestGen ran."""
        paths = self.paths
        venv = active_venv(paths)
        try:
            state_before: str | None = paths.state.read_text()
        except OSError:
            state_before = None
        self.values = {
            "action": action,
            "pid": os.getpid(),
            "started": now_iso(),
            "step": None,
            "phase": "steps",
            "home_existed": paths.testgen_home.exists(),
            "credentials_existed": paths.credentials.exists(),
            "venv_before": venv.name if venv else None,
            "state_before": state_before,
            "was_running": running,
            "safety_copy": False,
            "keep_data": False,
        }
        self.record()

    def record(self, **changes: Any) -> None:
        if self.active:
            self.values.update(changes)
            write_file_atomically(self.paths.journal, json.dumps(self.values, indent=2) + "\n", mode=0o600)

    def clear(self) -> None:
        if self.active:
            self.values = {}
            with contextlib.suppress(FileNotFoundError):
                self.paths.journal.unlink()


def failpoint(settings: Settings, step: str) -> None:
    """A fault-injection hook for the tests (README "Fault injection"), like FreeBSD's fail
    points: with DK_INSTALLER_FAILPOINT=<step name>, the installer stops at the start of that step
    and waits for a signal, so that a test can kill it exactly there. Unset, it does nothing."""
    if settings.failpoint != step:
        return
    echo(f"failpoint {step}: waiting for a signal", err=True)
    while True:
        signal.pause()


class Step:
    name = "step"
    title = "Step"
    required = True
    # Steps that change files or processes; the journal is written before each of them.
    side_effects = True

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        raise NotImplementedError

    def undo(self, ctx: ActionContext) -> None:
        """Reverse this step's effects; nothing by default."""

    def commit(self, ctx: ActionContext) -> None:
        """The action succeeded: drop what undo() would have needed; nothing by default."""


class UpToDate(StepSkipped):
    """Raised by a step when the action's goal is already met: the steps so far are undone and
    the action ends successfully with this message."""


def run_steps(ctx: ActionContext, steps: Sequence[Step]) -> None:
    """Run `steps` and commit them all; on any failure undo every started one, newest first.
    A mutating action keeps its journal up to date on the way, so that a kill can be recovered."""
    started: list[Step] = []
    journal = ctx.journal
    try:
        for step in steps:
            started.append(step)
            ctx.step = step.name
            if step.side_effects and ctx.action in MUTATING_ACTIONS:
                if not journal.active:
                    journal.begin(ctx.action, running=ctx.testgen.running())
                journal.record(step=step.name)
            try:
                with ctx.console.step(step.title) as progress:
                    failpoint(ctx.settings, step.name)
                    step.run(ctx, progress)
            except UpToDate:
                raise
            except StepSkipped:
                pass
            except InstallerError as exc:
                if step.required:
                    raise
                ctx.console.warn(f"  {exc.message} The rest goes on without it.")
                if exc.details:
                    ctx.console.warn(textwrap_indent(exc.details))
        ctx.step = None
    except BaseException:
        with deferred_signals():
            for step in reversed(started):
                try:
                    step.undo(ctx)
                except Exception:
                    log.exception("undo of %s failed", step.name)
                    ctx.console.error(f"  Could not fully undo '{step.title}'; see {current_log_path()}")
            journal.clear()
        raise
    journal.record(phase="commit")
    for step in started:
        try:
            step.commit(ctx)
        except Exception:
            log.exception("commit of %s failed", step.name)
    journal.clear()


def textwrap_indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _probe_python(executable: str) -> tuple[str, tuple[int, ...]] | None:
    path = executable if os.sep in executable else shutil.which(executable)
    if not path:
        return None
    try:
        out = subprocess.run(
            [
                path,
                "-c",
                "import sys; print(sys.executable); print('.'.join(map(str, sys.version_info[:3])))",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2:
        return None  # e.g. a pyenv shim for a version that is not selected
    return lines[0], tuple(int(part) for part in lines[1].split("."))


def find_uv() -> str | None:
    beside = Path(venv_bin(Path(sys.executable).parent.parent, "uv"))
    if beside.exists():
        return str(beside)
    return shutil.which("uv")


def find_testgen_python(explicit: str | None) -> PythonCheck:
    """--python if given, else the newest python3.1x on PATH, else uv's own interpreters."""
    needed = ".".join(map(str, TESTGEN_MIN_PYTHON))
    title = f"Python {needed}+ for TestGen"

    def found_ok(path: str, version: tuple[int, ...]) -> PythonCheck:
        shown = ".".join(map(str, version))
        return PythonCheck(
            ErrorCode.PYTHON_NOT_FOUND, title, True, f"{path} ({shown})", interpreter=path, version=shown
        )

    candidates = [explicit] if explicit else ["python3.13", "python3.12", "python3.11", "python3"]
    too_old: list[str] = []
    for candidate in candidates:
        found = _probe_python(candidate)
        if not found:
            continue
        if found[1][:2] >= TESTGEN_MIN_PYTHON:
            return found_ok(*found)
        too_old.append(f"{candidate} is {'.'.join(map(str, found[1]))}")
    if explicit:
        if too_old:
            return PythonCheck(
                ErrorCode.PYTHON_TOO_OLD, title, False, f"--python {too_old[0]}; TestGen needs {needed}+"
            )
        return PythonCheck(
            ErrorCode.PYTHON_NOT_FOUND, title, False, f"--python {explicit} is not a working interpreter"
        )
    uv = find_uv()
    if uv:
        try:
            out = subprocess.run(
                [uv, "python", "find", f">={needed}"],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=30,
            )
            path = out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            path = ""
        found = _probe_python(path) if path else None
        if found:
            return found_ok(*found)
        return PythonCheck(
            ErrorCode.PYTHON_NOT_FOUND, title, True, f"none found; uv will download Python {UV_PYTHON}"
        )
    detail = "; ".join(too_old) if too_old else "no python3.11, 3.12 or 3.13 on PATH"
    code = ErrorCode.PYTHON_TOO_OLD if too_old else ErrorCode.PYTHON_NOT_FOUND
    return PythonCheck(code, title, False, f"{detail}. Install Python {needed}+ or pass --python PATH")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(paths: Paths, settings: Settings) -> Requirement:
    existing = _nearest_existing(paths.home)
    free = shutil.disk_usage(existing).free
    needed = settings.min_free_bytes
    return Requirement(
        ErrorCode.DISK_FULL,
        "Free disk space",
        free >= needed,
        f"{free / 1024**3:.1f} GB free under {existing}, {needed / 1024**3:.1f} GB needed",
    )


def check_home_writable(paths: Paths) -> Requirement:
    existing = _nearest_existing(paths.home)
    ok = os.access(existing, os.W_OK | os.X_OK) and existing.is_dir()
    detail = f"{paths.home}" + (
        ""
        if ok
        else f" cannot be created or written ({existing} is not a writable folder). "
        "Set DK_INSTALLER_HOME to a folder you can write."
    )
    return Requirement(ErrorCode.HOME_NOT_WRITABLE, "Installer home writable", ok, detail)


def check_port(port: int, option: str, ours_running: bool) -> Requirement:
    """`option` is the flag that changes this port (--port, --api-port)."""
    title = f"{'UI' if option == '--port' else 'API'} port {port}"
    if ours_running:
        return Requirement(ErrorCode.PORT_IN_USE, title, True, "used by this TestGen")
    ok = port_free(port)
    return Requirement(
        ErrorCode.PORT_IN_USE, title, ok, "free" if ok else f"already in use; pick another with {option}"
    )


def index_url_of(options: InstallOptions, settings: Settings) -> str:
    return options.index_url or settings.index_url or DEFAULT_INDEX_URL


def unreachable_index_hint(index: str) -> str:
    return (
        f"Could not reach the package index {index}. Behind a proxy? Set HTTPS_PROXY (and HTTP_PROXY). "
        "Using a mirror? Pass --index-url URL. Offline? Pass --find-links DIR with the wheels."
    )


def check_index(options: InstallOptions, settings: Settings) -> Requirement:
    title = "Package index reachable"
    if options.find_links and not options.index_url:
        return Requirement(
            ErrorCode.INDEX_UNREACHABLE,
            title,
            True,
            f"skipped: installing from {options.find_links}",
            blocking=False,
        )
    import requests

    index = index_url_of(options, settings)
    url = f"{index.rstrip('/')}/{PACKAGE}/"
    try:
        response = requests.get(
            url, timeout=(5, 10), headers={"Accept": "text/html"}, verify=https_verify(settings)
        )
    except requests.RequestException as exc:
        return Requirement(
            ErrorCode.INDEX_UNREACHABLE,
            title,
            False,
            f"{type(exc).__name__}. {unreachable_index_hint(index)}",
            blocking=False,
        )
    if response.status_code == 404:
        return Requirement(
            ErrorCode.PACKAGE_NOT_FOUND,
            title,
            False,
            f"{index} has no package '{PACKAGE}'. Pass --index-url with an index that has it.",
            blocking=False,
        )
    if response.status_code >= 400:
        return Requirement(
            ErrorCode.INDEX_UNREACHABLE,
            title,
            False,
            f"HTTP {response.status_code}. {unreachable_index_hint(index)}",
            blocking=False,
        )
    return Requirement(ErrorCode.INDEX_UNREACHABLE, title, True, index, blocking=False)


def report_requirements(console: Console, checks: list[Requirement]) -> None:
    width = max(len(c.title) for c in checks)
    for check in checks:
        mark = console.style("ok  ", fg="green") if check.ok else console.style("FAIL", fg="red", bold=True)
        console.say(f"  {mark} {check.title:<{width}}  {check.detail}")


def require(ctx: ActionContext, checks: list[Requirement]) -> None:
    """Record the checks for the event; list every failure at once. Machine requirements
    (Python, disk, home, ports) exit 3; an unreachable index alone exits 1."""
    ctx.checks += checks
    failed = [c for c in checks if not c.ok]
    if not failed:
        return
    report_requirements(ctx.console, checks)
    if any(c.blocking for c in failed):
        raise RequirementsNotMet(failed)
    raise InstallerError(failed[0].detail, code=failed[0].code)


class Preflight(Step):
    name = "preflight"
    title = "Check requirements"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        options = ctx.options
        progress.update("looking for Python")
        python = find_testgen_python(options.python)
        checks: list[Requirement] = [
            python,
            check_home_writable(ctx.paths),
            check_disk(ctx.paths, ctx.settings),
            check_port(options.ui_port, "--port", False),
            check_port(options.api_port, "--api-port", False),
        ]
        progress.update("contacting the package index")
        checks.append(check_index(options, ctx.settings))
        require(ctx, checks)
        ctx.python, ctx.python_version = python.interpreter, python.version
        progress.result = (
            f"Python {ctx.python_version or 'to download'}, ports {options.ui_port}/{options.api_port}"
        )


@dataclasses.dataclass
class PackageEngine:
    """uv when available (about 10x faster), else pip. Caches live under DK_INSTALLER_HOME."""

    name: str
    uv: str | None
    paths: Paths
    settings: Settings

    @classmethod
    def choose(cls, paths: Paths, settings: Settings) -> PackageEngine:
        uv = None if settings.force_pip else find_uv()
        return cls("uv" if uv else "pip", uv, paths, settings)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["UV_CACHE_DIR"] = env.get("UV_CACHE_DIR") or str(self.paths.uv_cache)
        env["PIP_CACHE_DIR"] = env.get("PIP_CACHE_DIR") or str(self.paths.pip_cache)
        env["UV_PYTHON_INSTALL_DIR"] = str(self.paths.pythons)
        # uv leaves lock files in TMPDIR; they stay in here and go with the command.
        self.paths.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        env["TMPDIR"] = str(self.paths.tmp)
        if not self.settings.ca_from_environment:
            env["UV_SYSTEM_CERTS"] = "1"  # a TLS-inspecting proxy's CA is in the system store
        env.pop("VIRTUAL_ENV", None)
        return env

    def ensure_python(self, progress: Progress) -> str:
        assert self.uv
        run_command(
            [self.uv, "python", "install", UV_PYTHON],
            env=self.env(),
            progress=progress,
            error_code=ErrorCode.PYTHON_NOT_FOUND,
            what="uv python install",
        )
        return run_command([self.uv, "python", "find", UV_PYTHON], env=self.env(), timeout=60).strip()

    def create_venv(self, python: str, target: Path, progress: Progress) -> None:
        if self.uv:
            cmd = [self.uv, "venv", "--quiet", "--python", python, str(target)]
        else:
            cmd = [python, "-m", "venv", str(target)]
        run_command(
            cmd,
            env=self.env(),
            progress=progress,
            error_code=ErrorCode.PACKAGE_INSTALL_FAILED,
            what="creating TestGen's venv",
        )

    def install(
        self, venv: Path, requirement: str, options: InstallOptions, settings: Settings, progress: Progress
    ) -> None:
        sources: list[str] = []
        if options.index_url:
            sources += ["--index-url", options.index_url]
        if options.find_links:
            sources += ["--find-links", options.find_links]
            if not options.index_url:
                sources.append("--no-index")
        python = venv_bin(venv, "python")
        if self.uv:
            cmd = [self.uv, "pip", "install", "--python", python, "--compile-bytecode", *sources, requirement]
        else:
            cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", *sources, requirement]
        try:
            run_command(
                cmd,
                env=self.env(),
                progress=progress,
                error_code=ErrorCode.PACKAGE_INSTALL_FAILED,
                what=f"{self.name} install",
            )
        except CommandFailed as exc:
            raise classify_install_failure(exc, requirement, options, settings) from None


def classify_install_failure(
    exc: CommandFailed, requirement: str, options: InstallOptions, settings: Settings
) -> InstallerError:
    text = exc.details.lower()
    if options.find_links and not options.index_url:
        index = options.find_links
    else:
        index = index_url_of(options, settings)
    network = (
        "failed to fetch",
        "error sending request",
        "dns error",
        "connection refused",
        "failed to establish a new connection",
        "max retries exceeded",
        "timed out",
        "tls",
        "could not connect",
        "network",
    )
    not_found = (
        "not found in the package registry",
        "no solution found",
        "could not find a version",
        "no matching distribution",
        "was not found in the provided package locations",
    )
    if any(marker in text for marker in not_found):
        return InstallerError(
            f"{requirement} is not available from {index}. Check --version, or point --index-url / "
            "--find-links at a source that has it.",
            code=ErrorCode.PACKAGE_NOT_FOUND,
            details=exc.details,
        )
    if any(marker in text for marker in network):
        return InstallerError(
            unreachable_index_hint(index), code=ErrorCode.INDEX_UNREACHABLE, details=exc.details
        )
    return InstallerError(
        f"Installing {requirement} failed.", code=ErrorCode.PACKAGE_INSTALL_FAILED, details=exc.details
    )


class ChoosePackageEngine(Step):
    name = "package_engine"
    title = "Choose the package engine"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        ctx.engine = PackageEngine.choose(ctx.paths, ctx.settings)
        progress.result = ctx.engine.uv or "pip"


class DownloadPython(Step):
    """Only when the machine has no Python 3.11+ (preflight then found uv to download one)."""

    name = "download_python"
    title = f"Download Python {UV_PYTHON} with uv"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if ctx.python:
            raise StepSkipped(f"using {ctx.python}")
        assert ctx.engine
        ctx.python = ctx.engine.ensure_python(progress)
        found = _probe_python(ctx.python)
        ctx.python_version = ".".join(map(str, found[1])) if found else UV_PYTHON
        progress.result = f"Python {ctx.python_version} in {ctx.paths.pythons}"


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def active_venv(paths: Paths) -> Path | None:
    return paths.venv.resolve() if paths.venv.is_symlink() and paths.venv.exists() else None


def point_venv_at(paths: Paths, target: Path | None) -> None:
    """Atomically make testgen/venv point at `target` (or disappear)."""
    if target is None:
        if paths.venv.is_symlink():
            paths.venv.unlink()
        return
    tmp = paths.testgen / f".venv-link-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(Path("venvs") / target.name)
    os.replace(tmp, paths.venv)


def remove_stale_venvs(paths: Paths) -> None:
    """Staging venvs left by a killed run (never the active one)."""
    active = active_venv(paths)
    if paths.venvs.is_dir():
        for venv in paths.venvs.iterdir():
            if venv.resolve() != active:
                log.info("removing stale venv %s", venv)
                shutil.rmtree(venv, ignore_errors=True)


class InstallPackage(Step):
    """Build a new venv beside the active one; with `swap`, switch the venv link to it in one
    rename (an upgrade swaps later, in SwapVenv, once TestGen is stopped)."""

    name = "install_package"
    title = "Install TestGen"

    def __init__(self, swap: bool = True) -> None:
        self.swap = swap
        self.staging: Path | None = None
        self.previous: Path | None = None
        self.swapped = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        import secrets

        assert ctx.engine and ctx.python
        remove_stale_venvs(ctx.paths)
        ctx.paths.venvs.mkdir(parents=True, exist_ok=True)
        self.previous = active_venv(ctx.paths)
        self.staging = ctx.paths.venvs / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        spec = ctx.options.version if ctx.options.version else DEFAULT_VERSION_SPEC
        requirement = f"{PACKAGE}[{PACKAGE_EXTRA}]{spec}"
        progress.update("creating a venv")
        ctx.engine.create_venv(ctx.python, self.staging, progress)
        progress.update(f"installing {requirement}")
        ctx.engine.install(self.staging, requirement, ctx.options, ctx.settings, progress)
        version = installed_version(self.staging)
        if not version:
            raise InstallerError(
                f"{PACKAGE} did not install a readable version.", code=ErrorCode.PACKAGE_INSTALL_FAILED
            )
        ctx.installed_version = version
        if self.swap:
            point_venv_at(ctx.paths, self.staging)
            self.swapped = True
        progress.result = f"{PACKAGE} {version} with {ctx.engine.name}"

    def undo(self, ctx: ActionContext) -> None:
        if self.swapped:
            point_venv_at(ctx.paths, self.previous)
            self.swapped = False
        if self.staging and self.staging != self.previous:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self.previous is None:
            with contextlib.suppress(OSError):
                ctx.paths.venvs.rmdir()

    def commit(self, ctx: ActionContext) -> None:
        if self.previous and self.previous != self.staging:
            shutil.rmtree(self.previous, ignore_errors=True)


class CheckNewVersion(Step):
    """An upgrade that found nothing newer ends here, and the new venv is dropped."""

    name = "check_version"
    title = "Compare versions"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        assert ctx.state
        if ctx.installed_version == ctx.state.product_version:
            raise UpToDate(
                f"TestGen {ctx.state.product_version} is already the newest version matching "
                f"{ctx.options.version}."
            )
        progress.result = f"{ctx.state.product_version} -> {ctx.installed_version}"


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


class Configure(Step):
    """testgen standalone-setup with a generated password on stdin (never in argv); or, when
    TestGen's data was kept from an earlier install, upgrade that data to this version."""

    name = "configure"
    title = "Configure TestGen"

    def __init__(self) -> None:
        self.created_home = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        import secrets

        paths = ctx.paths
        testgen = ctx.testgen
        if paths.config_env.exists():
            ctx.kept_data = True
            known = read_credentials(paths)
            if known:
                ctx.password = known[1]
                redact.add(known[1])
            progress.update("upgrading the kept database to this TestGen version")
            testgen.cli(
                "upgrade-system-version", progress=progress, timeout=600, error_code=ErrorCode.SETUP_FAILED
            )
            testgen.config.set_analytics(ctx.analytics_enabled)
            progress.result = f"kept the existing TestGen data in {paths.testgen_home}"
            return
        self.created_home = True
        paths.testgen_home.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(15)
        redact.add(password)
        ctx.password = password
        # TestGen's own analytics id, random per install: without it TestGen derives one from the
        # MAC address. Setup gets it in its environment (config.env must not exist yet, or setup
        # asks "Overwrite?"); config.env keeps it for every later TestGen process.
        instance_id = secrets.token_hex(8)
        testgen.cli(
            "standalone-setup",
            stdin_text=f"{ADMIN_USERNAME}\n{password}\n{password}\n",
            progress=progress,
            timeout=900,
            error_code=ErrorCode.SETUP_FAILED,
            extra_env={"TG_INSTANCE_ID": instance_id},
        )
        testgen.config.update(TG_INSTANCE_ID=instance_id)
        testgen.config.set_analytics(ctx.analytics_enabled)
        write_credentials(paths, ADMIN_USERNAME, password, testgen.ui_url)
        progress.result = f"admin user '{ADMIN_USERNAME}', data in {paths.testgen_home}"

    def undo(self, ctx: ActionContext) -> None:
        if self.created_home:
            ctx.testgen.stop()
            shutil.rmtree(ctx.paths.testgen_home, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                ctx.paths.credentials.unlink()


class InstallCertificate(Step):
    """HTTPS: the certificate and key given at install are copied into TestGen's home (the key
    0600) and named in config.env, where TestGen reads them."""

    name = "tls"
    title = "Install the HTTPS certificate"

    def __init__(self) -> None:
        self.installed = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        options = ctx.options
        if options.ssl_cert is None or options.ssl_key is None:
            raise StepSkipped("plain HTTP (--ssl-cert-file and --ssl-key-file turn on HTTPS)")
        paths = ctx.paths
        self.installed = True
        paths.tls_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomically(paths.tls_cert, options.ssl_cert.read_text())
        write_file_atomically(paths.tls_key, options.ssl_key.read_text(), mode=0o600)
        ctx.testgen.config.update(
            SSL_CERT_FILE=str(paths.tls_cert),
            SSL_KEY_FILE=str(paths.tls_key),
            TG_UI_TLS_ENABLED="yes",
            TG_API_TLS_ENABLED="yes",
        )
        progress.result = f"{paths.tls_cert}"

    def undo(self, ctx: ActionContext) -> None:
        if self.installed:
            ctx.testgen.config.update(
                SSL_CERT_FILE=None, SSL_KEY_FILE=None, TG_UI_TLS_ENABLED=None, TG_API_TLS_ENABLED=None
            )
            remove_tree(ctx.paths.tls_cert.parent)


class InstallLauncher(Step):
    """`dk-installer` on PATH; never over a `dk-installer` that is not ours."""

    name = "launcher"
    title = "Put the dk-installer command on PATH"
    required = False

    def __init__(self) -> None:
        self.written = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        path = ctx.paths.launcher
        if (path.exists() or path.is_symlink()) and not launcher_is_ours(path):
            raise StepSkipped(f"{path} is not ours; left as it is")
        write_file_atomically(path, launcher_script(ctx.paths, ctx.settings), mode=0o755)
        self.written = True
        on_path = str(path.parent) in os.environ.get("PATH", "").split(os.pathsep)
        progress.result = str(path) + (
            "" if on_path else f"; {path.parent} is not on your PATH (add it there to type `dk-installer`)"
        )

    def undo(self, ctx: ActionContext) -> None:
        if self.written:
            remove_tree(ctx.paths.launcher)


class LoadDemoData(Step):
    name = "demo_data"
    title = "Load demo data"
    required = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.options.demo:
            raise StepSkipped("--no-demo")
        if ctx.kept_data:
            raise StepSkipped("kept data is left as it was")
        ctx.testgen.cli("quick-start", progress=progress, timeout=1800)


class StartApp(Step):
    name = "start"
    title = "Start TestGen"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.options.start:
            raise StepSkipped("--no-start")
        ctx.started_app = True
        ctx.testgen.start(progress)
        progress.result = f"UI {ctx.testgen.ui_url}"

    def undo(self, ctx: ActionContext) -> None:
        if ctx.started_app:
            ctx.testgen.stop()


class VerifyLogin(Step):
    name = "verify_login"
    title = "Verify the login"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.started_app:
            raise StepSkipped("TestGen was not started")
        if ctx.password is None:
            known = read_credentials(ctx.paths)
            ctx.password = known[1] if known else None
        if not ctx.password:
            raise StepSkipped("the password of the kept data is unknown")
        progress.update("logging in through TestGen's OAuth endpoints")
        ctx.login_success = ctx.testgen.login(ADMIN_USERNAME, ctx.password)
        if ctx.login_success is None:
            raise StepSkipped("this TestGen version has no login endpoint to check")
        if not ctx.login_success:
            if ctx.kept_data or ctx.action in ("upgrade", "restore"):
                # TestGen asks people to change the generated password: expected, not a failure.
                raise StepSkipped(
                    f"the password saved in {ctx.paths.credentials} no longer works (expected after a "
                    "change in TestGen's UI); TestGen itself is up"
                )
            raise InstallerError(
                f"TestGen rejected the login of '{ADMIN_USERNAME}' with the generated password.",
                code=ErrorCode.LOGIN_FAILED,
                details=file_tail(ctx.paths.app_log, 15),
            )
        progress.result = f"'{ADMIN_USERNAME}' logged in"


class SaveState(Step):
    name = "save_state"
    title = "Record the install"

    def __init__(self, previous: InstallState | None = None) -> None:
        self.previous = previous

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        assert ctx.engine
        stamp = now_iso()
        venv = active_venv(ctx.paths)
        testgen = ctx.testgen
        state = InstallState(
            product_version=ctx.product_version or "unknown",
            version_spec=ctx.options.version or DEFAULT_VERSION_SPEC,
            ui_port=testgen.ui_port,
            api_port=testgen.api_port,
            package_engine=ctx.engine.name,
            python=ctx.python or "",
            python_version=ctx.python_version or "",
            venv=venv.name if venv else "",
            installed_at=self.previous.installed_at if self.previous else stamp,
            updated_at=stamp,
            demo_data=self.previous.demo_data if self.previous else ctx.options.demo and not ctx.kept_data,
            listen=testgen.listen,
            tls=testgen.tls,
        )
        state.save(ctx.paths.state)
        ctx.state = state
        progress.result = str(ctx.paths.state)

    def undo(self, ctx: ActionContext) -> None:
        if self.previous:
            self.previous.save(ctx.paths.state)
        else:
            with contextlib.suppress(FileNotFoundError):
                ctx.paths.state.unlink()


class StopApp(Step):
    name = "stop"
    title = "Stop TestGen"

    def __init__(self, restart_on_undo: bool = True) -> None:
        self.restart_on_undo = restart_on_undo

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        ctx.was_running = ctx.testgen.stop(progress)
        if not ctx.was_running:
            raise StepSkipped("it was not running")

    def undo(self, ctx: ActionContext) -> None:
        """An upgrade that fails after stopping TestGen starts the previous one again."""
        testgen = ctx.testgen
        if self.restart_on_undo and ctx.was_running and active_venv(ctx.paths) and not testgen.running():
            with ctx.console.step("Start the previous TestGen again") as progress:
                testgen.start(progress)


class SwapVenv(Step):
    name = "swap_venv"
    title = "Switch to the new TestGen"

    def __init__(self, build: InstallPackage) -> None:
        self.build = build

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        assert self.build.staging
        point_venv_at(ctx.paths, self.build.staging)
        self.build.swapped = True

    def undo(self, ctx: ActionContext) -> None:
        if self.build.swapped:
            point_venv_at(ctx.paths, self.build.previous)
            self.build.swapped = False


class RestartApp(Step):
    name = "restart"
    title = "Start TestGen again"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.was_running:
            raise StepSkipped("it was not running before")
        ctx.started_app = True
        ctx.testgen.start(progress)

    def undo(self, ctx: ActionContext) -> None:
        if ctx.started_app:
            ctx.testgen.stop()
            ctx.started_app = False


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


BACKUP_FORMAT = "dk-installer-backup"
BACKUP_FORMAT_VERSION = 1


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:4])


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
    if version_key(backup_version) > version_key(installed_version):
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


class UpgradeDatabase(Step):
    name = "upgrade_database"
    title = "Upgrade TestGen's database"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        testgen = ctx.testgen
        testgen.cli(
            "upgrade-system-version", progress=progress, timeout=900, error_code=ErrorCode.UPGRADE_FAILED
        )
        testgen.patch_streamlit(progress)
        testgen.config.set_analytics(ctx.analytics_enabled)


# ---------------------------------------------------------------------------------------------
# 8. Actions
#
# perform() is the action boundary: the one place where an action starts and ends. It takes the
# lock for mutating actions, turns every outcome into an exit code, builds the ActionResult from
# what the action's context learned, and hands it to record_event() (section 5).
# ---------------------------------------------------------------------------------------------

MUTATING_ACTIONS = (
    "install",
    "upgrade",
    "start",
    "stop",
    "uninstall",
    "service_enable",
    "service_disable",
    "backup",
    "restore",
)


@dataclasses.dataclass
class Invocation:
    """What the command line said, for one run."""

    action: str
    options_set: list[str]
    no_analytics: bool
    verbose: bool
    settings: Settings = dataclasses.field(default_factory=Settings.from_environment)


LAUNCHER_MARK = "# dk-installer launcher:"


def launcher_is_ours(path: Path, home: Path | None = None) -> bool:
    """Written by dk-installer (and, given `home`, serving that install: a launcher of another
    install is left to that install)."""
    try:
        head = path.read_text(errors="replace")[:512]
    except OSError:
        return False
    if LAUNCHER_MARK not in head:
        return False
    import shlex

    return home is None or f"export DK_INSTALLER_HOME={shlex.quote(str(home))}\n" in head


def launcher_script(paths: Paths, settings: Settings) -> str:
    """The `dk-installer` launcher: with a runtime, its python runs the byte-compiled copy (no
    second interpreter start, no compile of this file); without one (the installer runs from a
    Python that has its packages), that Python runs the installer's saved copy."""
    import shlex

    runtime_python = venv_bin(paths.runtime, "python")
    if os.path.exists(runtime_python) and list(
        paths.runtime.glob("lib/python3*/site-packages/dk_installer.py")
    ):
        command = f"{shlex.quote(runtime_python)} -I -m dk_installer"
    else:
        script = paths.installer_copy if paths.installer_copy.exists() else settings.user_script or __file__
        command = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(script))}"
    return (
        "#!/bin/sh\n"
        f"{LAUNCHER_MARK} written by dk-installer; `dk-installer uninstall` removes it.\n"
        f"export DK_INSTALLER_HOME={shlex.quote(str(paths.home))}\n"
        "export DK_INSTALLER_LAUNCHED_BY=launcher\n"
        f'exec {command} "$@"\n'
    )


def our_launcher_on_path(paths: Paths) -> bool:
    found = shutil.which("dk-installer")
    return (
        found is not None
        and Path(found).resolve() == paths.launcher.resolve()
        and launcher_is_ours(paths.launcher, paths.home)
    )


def self_command(settings: Settings, paths: Paths) -> str:
    """How the user runs this installer again, for the hints we print."""
    if settings.launched_by == "package" or our_launcher_on_path(paths):
        return "dk-installer"
    python = settings.user_python or sys.executable
    on_path = shutil.which("python3")
    if on_path and os.path.realpath(on_path) == os.path.realpath(python):
        python = "python3"
    return f"{python} {settings.user_script or os.path.abspath(__file__)}"


def action_result(
    invocation: Invocation,
    ctx: ActionContext,
    outcome: str,
    error: BaseException | None,
    duration_s: float,
) -> ActionResult:
    """The analytics view of an action that ended, from its context and what ended it."""
    code: ErrorCode | None = None
    if isinstance(error, InstallerError):
        code = error.code
    elif isinstance(error, KeyboardInterrupt):
        code = ErrorCode.INTERRUPTED
    elif error is not None:
        code = ErrorCode.UNEXPECTED
    failed = [c for c in ctx.checks if not c.ok]
    if not failed and isinstance(error, RequirementsNotMet):
        failed = error.failed
    return ActionResult(
        action=invocation.action,
        options=list(invocation.options_set),
        outcome=outcome,
        duration_s=duration_s,
        failed_step=None if outcome == "success" else ctx.step,
        error_code=code.value if code else None,
        error_type=type(error).__name__ if outcome == "failure" and error is not None else None,
        missing_requirements=[c.code.value for c in failed],
        login_success=ctx.login_success,
        product_version=ctx.product_version,
        package_engine=ctx.package_engine,
    )


def perform(
    invocation: Invocation,
    body: Callable[[ActionContext], None],
    *,
    options: InstallOptions | None = None,
    quiet: bool = False,
    records_event: bool = True,
) -> int:
    paths = Paths.from_environment()
    settings = invocation.settings
    console = Console(quiet=quiet, no_color=settings.no_color)
    enabled, _rule = analytics_consent(paths, settings, invocation.no_analytics)
    if records_event:
        show_notice_once(paths, enabled)
    ctx = ActionContext(
        paths, settings, console, enabled, options or InstallOptions(), action=invocation.action
    )
    started = time.monotonic()
    lock = InstallerLock(paths.lock, invocation.action)
    exit_code = EXIT_OK
    outcome = "success"
    error: BaseException | None = None
    try:
        if invocation.action in MUTATING_ACTIONS:
            lock.acquire()
        start_run_log(paths, invocation.action, invocation.verbose)
        if invocation.action in MUTATING_ACTIONS:
            recover_interrupted_action(ctx)
        body(ctx)
    except RequirementsNotMet as exc:
        outcome, error, exit_code = "aborted", exc, exc.exit_code
        console.error(exc.message)
    except InstallerError as exc:
        outcome, error, exit_code = "failure", exc, exc.exit_code
        show_failure(console, exc)
    except KeyboardInterrupt as exc:
        outcome, error, exit_code = "interrupted", exc, EXIT_INTERRUPTED
        console.error("\nInterrupted. What this command had started was undone.")
    except Exception as exc:
        log.exception("unexpected error")
        outcome, error, exit_code = "failure", exc, EXIT_FAILED
        console.error(
            f"Unexpected error: {type(exc).__name__}: {redact(str(exc))}\n"
            f"Full log: {current_log_path()}. Please report it with `{ctx.self_command()} logs`."
        )
    finally:
        if invocation.action in MUTATING_ACTIONS and lock.held:
            remove_temporary_files(ctx)
        lock.release()
        result = action_result(invocation, ctx, outcome, error, time.monotonic() - started)
        log.info("%s ended: %s (exit %s)", invocation.action, outcome, exit_code)
        if records_event:
            record_event(result, paths, settings, invocation.no_analytics)
    return exit_code


def show_failure(console: Console, exc: InstallerError) -> None:
    console.error(f"Error: {exc.message}")
    if exc.details:
        console.error(textwrap_indent(exc.details))
    console.error(f"Full log: {current_log_path()}")


def load_state(ctx: ActionContext, *, required: bool) -> InstallState | None:
    try:
        state = InstallState.load(ctx.paths.state)
    except StateCorrupt as exc:
        raise InstallerError(
            f"The install receipt is damaged: {exc}. `{ctx.self_command()} doctor` explains; "
            f"`{ctx.self_command()} install` repairs it.",
            code=ErrorCode.STATE_CORRUPT,
        ) from None
    if state is None and required:
        raise InstallerError(
            f"TestGen is not installed. Install it with `{ctx.self_command()} install`.",
            code=ErrorCode.NOT_INSTALLED,
        )
    if state:
        ctx.use_receipt(state)
    return state


def repair_state(ctx: ActionContext) -> InstallState | None:
    """Rebuild a damaged state.json from what is installed, when enough of it is there."""
    venv = active_venv(ctx.paths)
    version = installed_version(ctx.paths.venv) if venv else None
    config = TestGenConfig(ctx.paths.config_env).read()
    if not (venv and version and config):
        return None
    python = os.path.realpath(venv_bin(ctx.paths.venv, "python"))
    found = _probe_python(python)
    stamp = now_iso()
    state = InstallState(
        product_version=version,
        version_spec=DEFAULT_VERSION_SPEC,
        ui_port=int(config.get("TG_UI_PORT", DEFAULT_UI_PORT)),
        api_port=int(config.get("TG_API_PORT", DEFAULT_API_PORT)),
        package_engine="uv" if find_uv() else "pip",
        python=python,
        python_version=".".join(map(str, found[1])) if found else "",
        venv=venv.name,
        installed_at=stamp,
        updated_at=stamp,
        demo_data=False,
        tls=bool(config.get("SSL_CERT_FILE")),
    )
    state.save(ctx.paths.state)
    return state


def interrupted_action(paths: Paths, lock_is_ours: bool = False) -> str | None:
    """The action that a killed command left half done, or None. Homes left by installers
    before the journal existed count too: config.env with no receipt and no credentials is what
    a killed `standalone-setup` leaves. While another command holds the lock, its journal is
    work in progress, not an interruption."""
    if not lock_is_ours and InstallerLock.held_elsewhere(paths.lock):
        return None
    journal = Journal.found(paths)
    if journal is not None:
        return str(journal.values.get("action") or "install")
    if paths.config_env.exists() and not paths.state.exists() and not paths.credentials.exists():
        return "install"
    return None


def recover_interrupted_action(ctx: ActionContext) -> None:
    """Before a mutating command does what was asked (it holds the lock, so the command that
    left the journal is gone): stop what the killed command left running, then put back what was
    there before it, or finish an uninstall or a commit that was under way."""
    paths = ctx.paths
    action = interrupted_action(paths, lock_is_ours=True)
    if action is None:
        return
    journal = Journal.found(paths) or Journal(paths)
    values = journal.values
    ctx.console.warn(
        f"An interrupted `{action}` was found"
        + (f" (it stopped in step '{values['step']}')" if values.get("step") else "")
        + ": repairing that first."
    )
    with ctx.console.step(f"Recover from the interrupted {action}") as progress:
        progress.update("stopping what it left running")
        TestGen(paths, ctx.settings, DEFAULT_UI_PORT, DEFAULT_API_PORT, ctx.analytics_enabled).stop(progress)
        if not values:
            remove_testgen_files(paths, keep_data=False, report=progress.update)
            progress.result = "removed the half-made TestGen home of an earlier installer"
        elif values.get("phase") == "commit":
            remove_stale_venvs(paths)
            remove_tree(paths.upgrade_backup)
            progress.result = f"finished the {action}"
        elif action == "uninstall":
            remove_testgen_files(paths, bool(values.get("keep_data")), report=progress.update)
            progress.result = "finished the uninstall"
        elif action in ("install", "upgrade", "restore"):
            roll_back_to_journal(paths, values, progress)
            progress.result = f"put back what was there before the {action}"
        else:
            if values.get("partial_file"):
                remove_tree(Path(values["partial_file"]))  # a backup cut short
            remove_tree(paths.backup_snapshot)
            progress.result = "stopped its leftovers"
        journal.clear()
    restarts = action in ("upgrade", "restore", "backup")
    if values.get("was_running") and restarts and ctx.action not in ("stop", "uninstall"):
        state = InstallState.load(paths.state)
        if state is not None:
            with ctx.console.step("Start TestGen again") as progress:
                TestGen.from_receipt(paths, ctx.settings, state, ctx.analytics_enabled).start(progress)


def roll_back_to_journal(paths: Paths, values: dict[str, Any], progress: Progress) -> None:
    """Undo a killed install or upgrade from what its journal says existed before it."""
    progress.update("restoring TestGen's data")
    remove_tree(paths.restore_staging)
    if values.get("safety_copy") and paths.upgrade_backup.exists():
        remove_tree(paths.testgen_home)
        os.rename(paths.upgrade_backup, paths.testgen_home)
    else:
        remove_tree(paths.upgrade_backup)  # half made: the data itself was not touched yet
        if values.get("home_existed", True) is False:
            remove_tree(paths.testgen_home)
    if values.get("credentials_existed", True) is False:
        remove_tree(paths.credentials)
    progress.update("restoring TestGen's venv")
    if "venv_before" in values:
        before = values["venv_before"]
        point_venv_at(paths, paths.venvs / before if before and (paths.venvs / before).is_dir() else None)
    remove_stale_venvs(paths)
    with contextlib.suppress(OSError):
        paths.venvs.rmdir()
    if "state_before" in values:
        if isinstance(values["state_before"], str):
            write_file_atomically(paths.state, values["state_before"])
        else:
            remove_tree(paths.state)


def install_action(ctx: ActionContext) -> None:
    try:
        state = load_state(ctx, required=False)
    except InstallerError:
        state = repair_state(ctx)
        if state is None:
            raise InstallerError(
                f"The install receipt {ctx.paths.state} is damaged and the install cannot be recovered "
                f"from it. Remove it with `{ctx.self_command()} uninstall --yes` (add --keep-data to keep "
                "TestGen's data), then install again.",
                code=ErrorCode.STATE_CORRUPT,
            ) from None
        ctx.console.warn(
            f"The install receipt was damaged; rebuilt it from the installed TestGen {state.venv}."
        )
        load_state(ctx, required=True)
    if state:
        finish_existing_install(ctx, state)
        return
    ctx.console.say(f"Installing DataOps TestGen into {ctx.paths.home}\n")
    run_steps(
        ctx,
        [
            Preflight(),
            ChoosePackageEngine(),
            DownloadPython(),
            InstallPackage(),
            BackupData(),
            Configure(),
            InstallCertificate(),
            LoadDemoData(),
            StartApp(),
            VerifyLogin(),
            SaveState(),
            InstallLauncher(),
        ],
    )
    print_summary(ctx)


def spec_allows(spec: str, version: str) -> bool:
    """A small evaluator for the specifiers this installer writes and accepts (==, !=, <, <=, >, >=, ~=)."""

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:4])

    current = key(version)
    for clause in filter(None, spec.split(",")):
        match = re.match(r"(==|!=|<=|>=|~=|<|>)(.+)", clause.strip())
        if not match:
            return False
        op, bound_text = match.groups()
        if bound_text.endswith(".*"):
            prefix = key(bound_text[:-2])
            equal = current[: len(prefix)] == prefix
            if (op == "==") != equal:
                return False
            continue
        bound = key(bound_text)
        width = max(len(current), len(bound))
        cur, bnd = current + (0,) * (width - len(current)), bound + (0,) * (width - len(bound))
        checks = {
            "==": cur == bnd,
            "!=": cur != bnd,
            "<": cur < bnd,
            "<=": cur <= bnd,
            ">": cur > bnd,
            ">=": cur >= bnd,
            "~=": cur >= bnd and cur[: max(1, len(bound) - 1)] == bnd[: max(1, len(bound) - 1)],
        }
        if not checks[op]:
            return False
    return True


def finish_existing_install(ctx: ActionContext, state: InstallState) -> None:
    """The idempotent re-run: nothing to install, say what is there."""
    spec = ctx.options.version or DEFAULT_VERSION_SPEC
    if not spec_allows(spec, state.product_version):
        raise InstallerError(
            f"TestGen {state.product_version} is installed, which does not match {spec}. "
            f"Change versions with `{ctx.self_command()} upgrade --version VERSION`.",
            code=ErrorCode.VERSION_CONFLICT,
        )
    if ctx.testgen.serving():
        ctx.console.say(f"TestGen {state.product_version} is already installed and running.")
        print_summary(ctx, show_password=False)
        return
    ctx.console.say(f"TestGen {state.product_version} is already installed, but it is not running.")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if (
        ctx.options.start
        and interactive
        and not ctx.options.assume_yes
        and click.confirm("Start it now?", default=True)
    ):
        start_action(ctx)
        return
    ctx.console.say(f"Start it with: {ctx.self_command()} start")


def print_summary(ctx: ActionContext, show_password: bool = True) -> None:
    options = ctx.options
    console = ctx.console
    testgen = ctx.testgen
    cmd = ctx.self_command()
    credentials = read_credentials(ctx.paths)
    console.say("")
    console.say(
        console.style(
            "DataOps TestGen is ready." if options.start else "DataOps TestGen is installed.",
            fg="green",
            bold=True,
        )
    )
    console.say(f"  UI:           {testgen.ui_url}")
    console.say(f"  API docs:     {testgen.api_docs_url}")
    console.say(f"  MCP server:   {testgen.mcp_url}   (for AI assistants)")
    if credentials:
        console.say(f"  Username:     {credentials[0]}")
        if show_password and sys.stdout.isatty():
            console.say(f"  Password:     {credentials[1]}   (shown once; also in the file below)")
        else:
            console.say("  Password:     in the credentials file")
    console.say(f"  Credentials:  {ctx.paths.credentials} (readable only by you)")
    console.say(f"  Logs:         {ctx.paths.app_log}")
    if testgen.shared:
        console.say(f"  Shared:       listening on {testgen.listen}: reachable from other machines")
    else:
        console.say(
            "  Reachable from this machine only. To share it on your network, install with "
            "--listen 0.0.0.0 (or one address of this machine)."
        )
    console.say("")
    console.say(f"  Stop:       {cmd} stop")
    console.say(f"  Start:      {cmd} start")
    console.say(f"  Status:     {cmd} status")
    console.say(f"  Uninstall:  {cmd} uninstall")
    if options.start and options.browser:
        open_browser(testgen.ui_url, ctx.settings)


def open_browser(url: str, settings: Settings) -> None:
    if sys.stdin.isatty() and sys.stdout.isatty() and settings.has_display:
        import webbrowser

        with contextlib.suppress(Exception):
            webbrowser.open(url)


def start_action(ctx: ActionContext) -> None:
    state = load_state(ctx, required=True)
    assert state
    testgen = ctx.testgen
    if testgen.serving():
        ctx.console.say(f"TestGen is already running: {testgen.ui_url}")
        return
    testgen.stop()  # leftovers of a crashed run would hold the ports and the database
    require(
        ctx,
        [check_port(testgen.ui_port, "--port", False), check_port(testgen.api_port, "--api-port", False)],
    )
    run_steps(ctx, [StartApp()])
    ctx.console.say(f"TestGen {state.product_version} is running: {testgen.ui_url}")


def stop_action(ctx: ActionContext) -> None:
    with contextlib.suppress(InstallerError):
        load_state(ctx, required=False)
    run_steps(ctx, [StopApp()])
    if ctx.was_running:
        ctx.console.say("TestGen and its PostgreSQL are stopped.")
    else:
        ctx.console.say("TestGen was not running.")


def upgrade_action(ctx: ActionContext) -> None:
    state = load_state(ctx, required=True)
    assert state
    if ctx.options.version is None:
        major = re.match(r"\d+", state.product_version)
        number = int(major.group()) if major else 5
        ctx.options.version = f">={number},<{number + 1}"
    python = find_testgen_python(state.python or None)
    if not python.ok:
        python = find_testgen_python(None)  # the recorded interpreter is gone: find another
    require(ctx, [python])
    ctx.python, ctx.python_version = python.interpreter, python.version
    ctx.console.say(f"Upgrading TestGen {state.product_version} to the newest {ctx.options.version}\n")
    # The new venv is built while the installed TestGen keeps running; it stops only for the swap.
    build = InstallPackage(swap=False)
    try:
        run_steps(
            ctx,
            [
                ChoosePackageEngine(),
                DownloadPython(),
                build,
                CheckNewVersion(),
                StopApp(),
                BackupData(),
                SwapVenv(build),
                UpgradeDatabase(),
                RestartApp(),
                VerifyLogin(),
                SaveState(previous=state),
            ],
        )
    except UpToDate as done:
        ctx.console.say(str(done))
        return
    ctx.console.say(f"TestGen is upgraded from {state.product_version} to {ctx.installed_version}.")


def run_action(ctx: ActionContext) -> None:
    """TestGen in the foreground, for a service manager or a terminal: SIGTERM (or Ctrl+C) stops
    it and its PostgreSQL and ends with exit 0; TestGen ending by itself ends with exit 1, so that
    Restart=on-failure starts it again. Holds no lock, records no event."""
    state = load_state(ctx, required=True)
    assert state
    testgen = ctx.testgen
    if testgen.running():
        raise InstallerError(
            f"TestGen is already running ({testgen.ui_url}); stop it first with `{ctx.self_command()} stop`.",
            code=ErrorCode.START_FAILED,
        )
    testgen.stop(through_service=False)  # leftovers of a crashed run would hold the ports and the database
    require(
        ctx,
        [check_port(testgen.ui_port, "--port", False), check_port(testgen.api_port, "--api-port", False)],
    )
    interrupted = False
    try:
        process = testgen.launch()
        with ctx.console.step("Start TestGen") as progress:
            testgen.wait_until_serving(process, progress)
        ctx.console.say(
            f"TestGen {state.product_version} is running: {testgen.ui_url} (SIGTERM or Ctrl+C stops it)"
        )
        returncode = process.wait()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Whatever ended it (a signal, TestGen dying, a failed start), nothing of it stays behind.
        with deferred_signals():
            testgen.stop(through_service=False)
    if interrupted:
        ctx.console.say("TestGen and its PostgreSQL are stopped.")
        return
    if returncode not in (0, -signal.SIGTERM):
        raise InstallerError(
            f"TestGen exited (exit code {returncode}).",
            code=ErrorCode.START_FAILED,
            details=file_tail(ctx.paths.app_log, 15),
        )
    ctx.console.say("TestGen was stopped.")


def service_command(ctx: ActionContext) -> list[str]:
    """What the service runs: `run`, with the interpreter running us now (it has the packages)
    and the installer's saved copy when there is one."""
    paths = ctx.paths
    script = (
        paths.installer_copy
        if paths.installer_copy.exists()
        else Path(ctx.settings.user_script or os.path.abspath(__file__))
    )
    return [sys.executable, str(script), "run"]


def service_enable_action(ctx: ActionContext, print_only: bool) -> None:
    manager = ServiceManager(ctx.paths)
    definition = manager.definition(service_command(ctx), ctx.paths)
    if print_only:
        ctx.console.say(f"# {manager.unit_path}")
        ctx.console.say(definition)
        return
    state = load_state(ctx, required=True)
    assert state
    reason = manager.unusable_reason()
    require(
        ctx,
        [
            Requirement(
                ErrorCode.SERVICE_UNAVAILABLE,
                "Service manager",
                reason is None,
                "usable"
                if reason is None
                else f"{reason}. Nothing was written. Start TestGen with `{ctx.self_command()} start`, "
                f"or run `{ctx.self_command()} run` under a supervisor of your choice.",
            )
        ],
    )
    testgen = ctx.testgen
    with ctx.console.step("Start TestGen as a service") as progress:
        testgen.stop(progress)  # the service runs it from now on, not a `start` beside it
        manager.enable(definition)
        testgen.wait_until_serving(None, progress)
        progress.result = str(manager.unit_path)
    ctx.console.say(f"TestGen runs as a service and starts at boot: {testgen.ui_url}")
    hint = manager.linger_hint()
    if hint:
        ctx.console.say(hint)


def service_disable_action(ctx: ActionContext) -> None:
    manager = ServiceManager(ctx.paths)
    if not manager.installed():
        ctx.console.say("TestGen is not a service; nothing to do.")
        return
    with ctx.console.step("Remove the service") as progress:
        manager.disable()
        progress.result = f"removed {manager.unit_path}"
    ctx.console.say(
        f"TestGen no longer starts at boot and is stopped; `{ctx.self_command()} start` starts it."
    )


def service_status_action(ctx: ActionContext) -> None:
    manager = ServiceManager(ctx.paths)
    if not manager.installed():
        ctx.console.say(f"TestGen is not a service. `{ctx.self_command()} service enable` makes it one.")
        return
    active = manager.active()
    ctx.console.say(f"TestGen is a service ({manager.unit_path}): {'running' if active else 'not running'}.")


def backup_action(ctx: ActionContext, output: Path | None) -> None:
    state = load_state(ctx, required=True)
    assert state
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = (output or ctx.paths.backups / f"testgen-{state.product_version}-{stamp}.tar.gz").absolute()
    started = time.monotonic()
    # A stopped PostgreSQL gives an exact copy with cp and tarfile (pg_dump would need the server
    # up and pgserver's socket); TestGen is down only for the copy, not for the compression.
    run_steps(ctx, [StopApp(), SnapshotData(), RestartApp(), WriteBackup(target)])
    ctx.console.say(
        f"Backup written to {target} in {time.monotonic() - started:.1f}s (readable only by you)."
    )
    ctx.console.say("It holds TestGen's keys and credentials: keep it as safe as the machine itself.")


def restore_action(ctx: ActionContext, source: Path) -> None:
    state = load_state(ctx, required=True)
    assert state
    source = source.absolute()
    manifest = read_backup(source, state.product_version)
    ctx.console.say(
        f"Restoring TestGen data from {manifest.get('created')} (TestGen {manifest.get('testgen_version')})\n"
    )
    run_steps(
        ctx,
        [UnpackBackup(source), StopApp(), SwapHome(), UpgradeDatabase(), RestartApp(), VerifyLogin()],
    )
    ctx.console.say(f"TestGen's data is restored from {source}.")


def collect_status(ctx: ActionContext) -> dict[str, Any]:
    paths = ctx.paths
    status: dict[str, Any] = {
        "installed": False,
        "version": None,
        "running": False,
        "pid": None,
        "ui_url": None,
        "api_url": None,
        "health": None,
        "api_docs_url": None,
        "mcp_url": None,
        "listen": None,
        "https": None,
        "service": ServiceManager(paths).installed(),
        "home": str(paths.home),
        "state": "missing",
        "interrupted_action": interrupted_action(paths),
    }
    try:
        state = InstallState.load(paths.state)
    except StateCorrupt:
        status["state"] = "damaged"
        return status
    if state is None:
        return status
    ctx.use_receipt(state)
    testgen = ctx.testgen
    status.update(
        installed=True,
        version=state.product_version,
        state="ok",
        ui_url=testgen.ui_url,
        api_url=testgen.api_url,
        api_docs_url=testgen.api_docs_url,
        mcp_url=testgen.mcp_url,
        listen=testgen.listen,
        https=testgen.tls,
    )
    app = testgen.app_process()
    if app is not None:
        status.update(running=True, pid=app.pid, health=testgen.health())
    return status


def status_action(ctx: ActionContext, as_json: bool) -> None:
    status = collect_status(ctx)
    if as_json:
        click.echo(json.dumps(status, indent=2))
    elif status["state"] == "damaged":
        ctx.console.say(
            f"The install receipt {ctx.paths.state} is damaged; run `{ctx.self_command()} doctor`."
        )
    elif not status["installed"]:
        ctx.console.say(f"TestGen is not installed (home: {ctx.paths.home}).")
    else:
        running = f"running (pid {status['pid']})" if status["running"] else "stopped"
        ctx.console.say(f"TestGen {status['version']}: installed, {running}")
        for part, url in (("ui", status["ui_url"]), ("api", status["api_url"])):
            health = (
                ""
                if not status["running"]
                else ("  healthy" if status["health"][part] else "  NOT answering")
            )
            ctx.console.say(f"  {part.upper():<4}{url}{health}")
        ctx.console.say(f"  API docs  {status['api_docs_url']}")
        ctx.console.say(f"  MCP       {status['mcp_url']}")
        shared = "every address" if status["listen"] == ALL_ADDRESSES else status["listen"]
        ctx.console.say(f"  Listening on {shared}")
    if status["interrupted_action"] and not as_json:
        action = status["interrupted_action"]
        ctx.console.warn(
            f"An interrupted `{action}` was found; `{ctx.self_command()} {action}` repairs it "
            "(any command that changes the install does)."
        )
    if status["state"] == "damaged":
        raise InstallerError("The install receipt is damaged.", code=ErrorCode.STATE_CORRUPT)


def uninstall_action(ctx: ActionContext, keep_data: bool) -> None:
    paths = ctx.paths
    bookkeeping = {paths.lock.name, paths.logs.name}
    if not paths.home.exists() or all(p.name in bookkeeping for p in paths.home.iterdir()):
        remove_installer_files(paths, keep_data=False)
        ctx.console.say(f"Nothing to uninstall: TestGen is not installed in {paths.home}.")
        return
    with contextlib.suppress(InstallerError):
        load_state(ctx, required=False)
    run_steps(ctx, [StopApp(restart_on_undo=False), RemoveFiles(keep_data)])
    if keep_data:
        ctx.console.say(
            f"TestGen is uninstalled. Its data and credentials are kept in {paths.testgen_home}; "
            "a later install uses them again."
        )
    else:
        ctx.console.say("TestGen is uninstalled and its files are removed.")
    ctx.console.say(
        f"Your settings (analytics choice) stay in {paths.config}; delete that folder to forget them."
    )


def _remove_all(targets: list[Path], report: Callable[[str], None]) -> None:
    for target in targets:
        if target.exists() or target.is_symlink():
            report(f"removing {target}")
            remove_tree(target)


def remove_testgen_files(paths: Paths, keep_data: bool, report: Callable[[str], None] = log.info) -> None:
    """TestGen's venvs, run files and receipt; its data, credentials and backups too unless kept."""
    data = [] if keep_data else [paths.testgen_home, paths.credentials, paths.backups]
    _remove_all(
        [
            paths.venv,
            paths.venvs,
            paths.run_dir,
            paths.app_pid,
            paths.upgrade_backup,
            paths.restore_staging,
            paths.backup_snapshot,
            *data,
            paths.state,
        ],
        report,
    )
    with contextlib.suppress(OSError):
        paths.testgen.rmdir()


def remove_installer_files(paths: Paths, keep_data: bool, report: Callable[[str], None] = log.info) -> None:
    """Everything the installer created under DK_INSTALLER_HOME, except TestGen's data if kept,
    and its launcher."""
    remove_testgen_files(paths, keep_data, report)
    if launcher_is_ours(paths.launcher, paths.home):
        _remove_all([paths.launcher], report)
    _remove_all(
        [
            paths.cache,
            paths.pythons,
            paths.tmp,
            paths.logs,
            paths.installer_copy,
            paths.runtime,
            paths.journal,
            paths.lock,
        ],
        report,
    )
    with contextlib.suppress(OSError):
        paths.home.rmdir()


def remove_temporary_files(ctx: ActionContext) -> None:
    """uv's and TestGen's TMPDIR goes at the end of each mutating command, unless the app that
    may still use it runs."""
    if ctx.paths.tmp.exists() and not ctx.testgen.processes():
        shutil.rmtree(ctx.paths.tmp, ignore_errors=True)


class RemoveFiles(Step):
    name = "remove_files"
    title = "Remove TestGen and the installer's files"

    def __init__(self, keep_data: bool) -> None:
        self.keep_data = keep_data

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        ctx.journal.record(keep_data=self.keep_data)
        if ctx.testgen.service.installed():
            progress.update("removing the service")
            ctx.testgen.service.disable()
        remove_installer_files(ctx.paths, self.keep_data, progress.update)
        ctx.journal.clear()  # it went with the rest; writing it again would make the home anew
        progress.result = "data kept" if self.keep_data else str(ctx.paths.home)


def doctor_checks(ctx: ActionContext) -> list[Requirement]:
    import platform

    paths = ctx.paths
    checks: list[Requirement] = [
        Requirement(
            ErrorCode.PYTHON_NOT_FOUND,
            "Python for this installer",
            True,
            f"{sys.executable} ({platform.python_version()})",
        ),
        find_testgen_python(None),
        check_home_writable(paths),
        check_disk(paths, ctx.settings),
    ]
    config_ok = (
        os.access(paths.config if paths.config.exists() else paths.config.parent, os.W_OK)
        or not paths.config.parent.exists()
    )
    checks.append(
        Requirement(
            ErrorCode.CONFIG_NOT_WRITABLE,
            "Settings folder writable",
            config_ok,
            str(paths.config),
            blocking=False,
        )
    )
    interrupted = interrupted_action(paths)
    checks.append(
        Requirement(
            ErrorCode.INTERRUPTED,
            "No interrupted command",
            interrupted is None,
            "none"
            if interrupted is None
            else f"an interrupted `{interrupted}` was found; `{ctx.self_command()} {interrupted}` repairs it",
        )
    )
    state: InstallState | None = None
    try:
        state = InstallState.load(paths.state)
        checks.append(
            Requirement(
                ErrorCode.STATE_CORRUPT,
                "Install receipt",
                True,
                "not installed" if state is None else str(paths.state),
            )
        )
    except StateCorrupt as exc:
        checks.append(
            Requirement(
                ErrorCode.STATE_CORRUPT,
                "Install receipt",
                False,
                f"{exc}. `{ctx.self_command()} install` rebuilds it from the installed TestGen; "
                f"`{ctx.self_command()} uninstall --yes` removes the install",
            )
        )
    if state:
        ctx.use_receipt(state)
    testgen = ctx.testgen
    running = testgen.running()
    checks += [
        check_port(testgen.ui_port, "--port", running),
        check_port(testgen.api_port, "--api-port", running),
    ]
    if state:
        version = installed_version(paths.venv)
        checks.append(
            Requirement(
                ErrorCode.VENV_BROKEN,
                "TestGen venv",
                version == state.product_version,
                f"{paths.venv}: {version or 'missing or broken'}"
                + (
                    ""
                    if version == state.product_version
                    else f", expected {state.product_version}; run `{ctx.self_command()} upgrade`"
                ),
            )
        )
        if running:
            health = testgen.health()
            checks.append(
                Requirement(
                    ErrorCode.START_FAILED,
                    "TestGen answering",
                    all(health.values()),
                    ", ".join(f"{k.upper()} {'ok' if v else 'not answering'}" for k, v in health.items()),
                )
            )
    checks.append(check_index(InstallOptions(), ctx.settings))
    return checks


def doctor_action(ctx: ActionContext) -> None:
    checks = doctor_checks(ctx)
    ctx.checks = checks
    ctx.console.say("dk-installer doctor\n")
    report_requirements(ctx.console, checks)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise RequirementsNotMet(failed)
    ctx.console.say("\nEverything looks fine.")


def logs_action(ctx: ActionContext, output: Path | None) -> None:
    """A support zip: installer logs, TestGen log tails, state, doctor output. Secrets redacted."""
    import io
    import platform
    import zipfile

    paths = ctx.paths
    known = read_credentials(paths)
    if known:
        redact.add(known[1])
    for key, value in TestGenConfig(paths.config_env).read().items():
        if key in SECRET_KEYS:
            redact.add(value)
    paths.logs.mkdir(parents=True, exist_ok=True)
    target = output or paths.logs / f"support-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.zip"
    doctor_text = io.StringIO()
    with contextlib.redirect_stdout(doctor_text):
        report_requirements(Console(no_color=True), doctor_checks(ctx))

    def tail(path: Path, lines: int = 2000) -> str:
        return file_tail(path, lines, max_bytes=8 * 1024 * 1024) + "\n"

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as bundle:
        for log_file in sorted(paths.logs.glob("*.log")):
            bundle.writestr(f"logs/{log_file.name}", tail(log_file, 20000))
        if (paths.testgen_logs / "app.log").exists():
            bundle.writestr("testgen/app.log", tail(paths.testgen_logs / "app.log"))
        if paths.state.exists():
            bundle.writestr("state.json", tail(paths.state))
        if paths.config_env.exists():
            bundle.writestr("testgen/config.env", tail(paths.config_env))
        bundle.writestr("doctor.txt", redact(doctor_text.getvalue()))
        bundle.writestr(
            "environment.txt", f"dk-installer {__version__}\nPython {sys.version}\n{platform.platform()}\n"
        )
    ctx.console.say(f"Support bundle written to {target}")
    ctx.console.say("Passwords and keys are redacted; look inside before you share it.")


# ---------------------------------------------------------------------------------------------
# 9. Command line
# ---------------------------------------------------------------------------------------------

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
PORT = click.IntRange(1, 65535)


def common_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """--no-analytics and --verbose work after the command word too."""
    command = click.option("--verbose", "-v", is_flag=True, help="Print debug output.")(command)
    return click.option(
        "--no-analytics", is_flag=True, help="Send no analytics for this run (and turn TestGen's off)."
    )(command)


def invocation_of(ctx: click.Context, action: str) -> Invocation:
    from click.core import ParameterSource

    user_set = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    def names_set(context: click.Context) -> set[str]:
        """The long flag names the user gave (--no-demo -> no_demo), never their values."""
        return {
            max(param.opts, key=len).lstrip("-").replace("-", "_")
            for param in context.command.params
            if param.name and context.get_parameter_source(param.name) in user_set
        }

    parent = ctx.parent
    names = names_set(ctx) | (names_set(parent) if parent is not None else set())
    no_analytics = bool(ctx.params.get("no_analytics") or (parent and parent.params.get("no_analytics")))
    verbose = bool(ctx.params.get("verbose") or (parent and parent.params.get("verbose")))
    return Invocation(action, sorted(names), no_analytics, verbose, ctx.find_object(Settings))


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dk-installer", message="%(prog)s %(version)s")
@common_flags
def cli(no_analytics: bool, verbose: bool) -> None:
    """Install, run and manage DataKitchen's DataOps TestGen.

    Exit codes: 0 success, 1 the action failed, 2 usage error, 3 requirements not met, 130 interrupted.
    """


def version_option_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return version_specifier(value) if value else None


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--port", type=PORT, default=DEFAULT_UI_PORT, show_default=True, help="Port of TestGen's UI.")
@click.option(
    "--api-port", type=PORT, default=DEFAULT_API_PORT, show_default=True, help="Port of TestGen's API."
)
@click.option(
    "--version",
    "version",
    callback=version_option_value,
    metavar="VERSION",
    help="TestGen version (5.92.2) or specifier (>=5.90,<6). Default: newest 5.x.",
)
@click.option("--index-url", metavar="URL", help="Package index to install from (a mirror).")
@click.option("--find-links", metavar="DIR|URL", help="Wheels to install from (air-gapped installs).")
@click.option("--python", "python", metavar="PATH", help="Python 3.11+ interpreter for TestGen.")
@click.option("--no-demo", is_flag=True, help="Do not load the demo data.")
@click.option("--no-start", is_flag=True, help="Install and configure, but do not start TestGen.")
@click.option("--no-browser", is_flag=True, help="Do not open the browser at the end.")
@click.option(
    "--listen",
    metavar="ADDRESS",
    default=LOOPBACK,
    show_default=True,
    help="Address TestGen listens on: 0.0.0.0 (or one address of this machine) shares it on your network.",
)
@click.option(
    "--ssl-cert-file", type=click.Path(path_type=Path), help="HTTPS certificate (PEM; with the key)."
)
@click.option("--ssl-key-file", type=click.Path(path_type=Path), help="HTTPS private key (PEM, unencrypted).")
@click.option("--yes", "-y", is_flag=True, help="Answer yes to every question.")
@common_flags
@click.pass_context
def install(
    ctx: click.Context,
    port: int,
    api_port: int,
    version: str | None,
    index_url: str | None,
    find_links: str | None,
    python: str | None,
    no_demo: bool,
    no_start: bool,
    no_browser: bool,
    listen: str,
    ssl_cert_file: Path | None,
    ssl_key_file: Path | None,
    yes: bool,
    **_: Any,
) -> int:
    """Check requirements, install TestGen, configure it, load demo data, start it and log in."""
    if port == api_port:
        raise click.BadParameter("the UI and the API need different ports", param_hint="--api-port")
    check_listen_address(listen)
    check_certificate_pair(ssl_cert_file, ssl_key_file)
    options = InstallOptions(
        ui_port=port,
        api_port=api_port,
        version=version,
        index_url=index_url,
        find_links=find_links,
        python=python,
        demo=not no_demo,
        start=not no_start,
        browser=not no_browser,
        assume_yes=yes,
        listen=listen,
        ssl_cert=ssl_cert_file,
        ssl_key=ssl_key_file,
    )
    return perform(invocation_of(ctx, "install"), install_action, options=options)


def check_listen_address(listen: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise click.BadParameter(f"'{listen}' is not an IP address.", param_hint="--listen") from None
    if not address_of_this_machine(listen):
        raise click.BadParameter(
            f"this machine has no address {listen}; use 0.0.0.0 for all its addresses.", param_hint="--listen"
        )


def check_certificate_pair(cert: Path | None, key: Path | None) -> None:
    """Both or neither, readable, and a matching pair: TestGen would otherwise fail at start-up."""
    import ssl

    if (cert is None) != (key is None):
        raise click.UsageError("HTTPS needs both --ssl-cert-file and --ssl-key-file.")
    if cert is None or key is None:
        return
    for path, option in ((cert, "--ssl-cert-file"), (key, "--ssl-key-file")):
        try:
            path.read_bytes()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path} ({exc.strerror}).", param_hint=option) from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key), password=lambda: b"")
    except ssl.SSLError:
        raise click.BadParameter(
            f"{cert} and {key} are not a matching certificate and unencrypted private key (PEM).",
            param_hint="--ssl-cert-file / --ssl-key-file",
        ) from None


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--version",
    "version",
    callback=version_option_value,
    metavar="VERSION",
    help="Target version or specifier. Default: newest of the installed major version.",
)
@click.option("--index-url", metavar="URL", help="Package index to install from (a mirror).")
@click.option("--find-links", metavar="DIR|URL", help="Wheels to install from (air-gapped installs).")
@common_flags
@click.pass_context
def upgrade(
    ctx: click.Context, version: str | None, index_url: str | None, find_links: str | None, **_: Any
) -> int:
    """Upgrade TestGen and its database; restart it if it was running. Rolls back on failure."""
    options = InstallOptions(version=version, index_url=index_url, find_links=find_links)
    return perform(invocation_of(ctx, "upgrade"), upgrade_action, options=options)


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def start(ctx: click.Context, **_: Any) -> int:
    """Start TestGen in the background and wait until it answers."""
    return perform(invocation_of(ctx, "start"), start_action)


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def stop(ctx: click.Context, **_: Any) -> int:
    """Stop TestGen and its PostgreSQL."""
    return perform(invocation_of(ctx, "stop"), stop_action)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@common_flags
@click.pass_context
def status(ctx: click.Context, as_json: bool, **_: Any) -> int:
    """Is TestGen installed and running? Version, URLs and health."""
    return perform(
        invocation_of(ctx, "status"), lambda action_ctx: status_action(action_ctx, as_json), quiet=as_json
    )


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--keep-data", is_flag=True, help="Keep TestGen's data and credentials for a later install.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common_flags
@click.pass_context
def uninstall(ctx: click.Context, keep_data: bool, yes: bool, **_: Any) -> int:
    """Stop TestGen and remove everything the installer created."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("uninstall asks for confirmation; pass --yes to run it without a terminal")
        what = "TestGen (keeping its data)" if keep_data else "TestGen and ALL its data"
        if not click.confirm(f"Remove {what} from {installer_home()}?", default=False):
            click.echo("Nothing was removed.")
            return EXIT_OK
    return perform(
        invocation_of(ctx, "uninstall"), lambda action_ctx: uninstall_action(action_ctx, keep_data)
    )


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def doctor(ctx: click.Context, **_: Any) -> int:
    """Check every requirement and print a table; exit 3 if any fails."""
    return perform(invocation_of(ctx, "doctor"), doctor_action)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the zip. Default: a new file in the installer's logs folder.",
)
@common_flags
@click.pass_context
def logs(ctx: click.Context, output: Path | None, **_: Any) -> int:
    """Write a support zip (logs, state, doctor output) with secrets redacted."""
    return perform(invocation_of(ctx, "logs"), lambda action_ctx: logs_action(action_ctx, output))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the backup. Default: a new file in the installer's backups folder.",
)
@common_flags
@click.pass_context
def backup(ctx: click.Context, output: Path | None, **_: Any) -> int:
    """Back up TestGen's data, keys and credentials (TestGen stops only for the copy)."""
    return perform(invocation_of(ctx, "backup"), lambda action_ctx: backup_action(action_ctx, output))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common_flags
@click.pass_context
def restore(ctx: click.Context, file: Path, yes: bool, **_: Any) -> int:
    """Replace TestGen's data with a backup; the current data stays until the restored data runs."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("restore asks for confirmation; pass --yes to run it without a terminal")
        if not click.confirm(f"Replace TestGen's current data with {file}?", default=False):
            click.echo("Nothing was changed.")
            return EXIT_OK
    return perform(invocation_of(ctx, "restore"), lambda action_ctx: restore_action(action_ctx, file))


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def run(ctx: click.Context, **_: Any) -> int:
    """Run TestGen in the foreground until SIGTERM or Ctrl+C (what a service runs). Records no event."""
    return perform(invocation_of(ctx, "run"), run_action, records_event=False)


@cli.group(context_settings=CONTEXT_SETTINGS)
def service() -> None:
    """Start TestGen at boot with the user's service manager (systemd, launchd)."""


@service.command("enable", context_settings=CONTEXT_SETTINGS)
@click.option("--print", "print_only", is_flag=True, help="Show the unit (or launchd agent); write nothing.")
@common_flags
@click.pass_context
def service_enable(ctx: click.Context, print_only: bool, **_: Any) -> int:
    """Install and start the service; TestGen then starts at boot and after a crash."""
    return perform(
        invocation_of(ctx, "service_enable"), lambda action_ctx: service_enable_action(action_ctx, print_only)
    )


@service.command("disable", context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def service_disable(ctx: click.Context, **_: Any) -> int:
    """Stop the service and remove it."""
    return perform(invocation_of(ctx, "service_disable"), service_disable_action)


@service.command("status", context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def service_status(ctx: click.Context, **_: Any) -> int:
    """Is TestGen a service, and is it running?"""
    return perform(invocation_of(ctx, "service_status"), service_status_action)


@cli.group(context_settings=CONTEXT_SETTINGS)
def analytics() -> None:
    """See and control the anonymous usage analytics (these commands send nothing)."""


@analytics.command("status")
@common_flags
@click.pass_obj
def analytics_status(settings: Settings, no_analytics: bool, **_: Any) -> None:
    """On or off, which rule decided, the anonymous id, unsent events, last send."""
    paths = Paths.from_environment()
    parent = click.get_current_context().find_root()
    enabled, rule = analytics_consent(
        paths, settings, no_analytics or bool(parent.params.get("no_analytics"))
    )
    saved = UserSettings(paths.settings)
    spool = paths.spool
    pending = len(spool.read_text().splitlines()) if spool.exists() else 0
    sender = SenderState(paths).values
    click.echo(f"Analytics:      {'on' if enabled else 'off'} (decided by: {rule})")
    click.echo(f"Anonymous id:   {saved.get('anonymous_id') or '(none yet)'}")
    click.echo(f"Unsent events:  {pending} ({spool.stat().st_size if spool.exists() else 0} bytes)")
    click.echo(
        f"Last send:      {sender.get('last_result', 'never')} {sender.get('last_attempt', '')}".rstrip()
    )
    if float(sender.get("paused_until", 0)) > time.time():
        click.echo("Sending paused for 24 h after repeated failures.")
    if paths.config_env.exists():
        saved_for_testgen = TestGenConfig(paths.config_env).read().get("TG_ANALYTICS")
        testgen_on = enabled and saved_for_testgen != "no"
        testgen_line = f"{'on' if testgen_on else 'off'} (config.env: TG_ANALYTICS={saved_for_testgen})"
    else:
        testgen_line = "TestGen is not installed"
    click.echo(f"TestGen's own:  {testgen_line}")
    click.echo(f"Details:        {PRIVACY_URL}")


@analytics.command("enable")
@click.pass_obj
def analytics_enable(settings: Settings) -> None:
    """Turn analytics on (environment opt-outs still win)."""
    paths = Paths.from_environment()
    UserSettings(paths.settings).update(analytics="enabled")
    TestGenConfig(paths.config_env).set_analytics(True)
    enabled, rule = analytics_consent(paths, settings, False)
    click.echo("Analytics enabled." if enabled else f"Saved, but analytics stays off because of {rule}.")


@analytics.command("disable")
def analytics_disable() -> None:
    """Turn analytics off; delete the anonymous id and unsent events. Sends nothing."""
    paths = Paths.from_environment()
    UserSettings(paths.settings).update(analytics="disabled", anonymous_id=None, first_event_recorded=None)
    for path in (paths.spool, paths.history, paths.sender_state):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    TestGenConfig(paths.config_env).set_analytics(False)
    click.echo(
        "Analytics disabled. The anonymous id and unsent events are deleted; TestGen's own analytics "
        "are off too."
    )


@analytics.command("preview")
@click.argument("action", type=click.Choice(ACTIONS), default="install")
@click.pass_obj
def analytics_preview(settings: Settings, action: str) -> None:
    """Print the exact JSON the next event would carry. Sends nothing, writes nothing."""
    import uuid

    saved = UserSettings(Paths.from_environment().settings)
    distinct_id = saved.get("anonymous_id")
    if not distinct_id:
        distinct_id = str(uuid.uuid4())
        click.echo("(no anonymous id yet: the first event creates a random one like this)", err=True)
    result = ActionResult(action, [])
    event = build_event(result, distinct_id, not saved.get("first_event_recorded"), settings)
    click.echo(json.dumps([event], indent=2))


@analytics.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the raw payloads instead of a table.")
def analytics_show(as_json: bool) -> None:
    """The last 20 events attempted and those waiting, with their delivery result."""
    paths = Paths.from_environment()
    history = read_history(paths)[-HISTORY_KEPT:]
    spool = Spool(paths)
    waiting = spool.pending() if spool.path.exists() else []
    rows = [(entry.get("result"), entry.get("event") or {}) for entry in history]
    rows += [("waiting", event) for event in waiting]
    if as_json:
        click.echo(json.dumps([{"delivery": result, "event": event} for result, event in rows], indent=2))
        return
    if not rows:
        click.echo("No event has been sent from this machine.")
        return
    click.echo(f"{'time (UTC)':<20} {'event':<10} {'outcome':<12} {'error code':<24} delivery")
    for result, event in rows:
        props = event.get("properties", {})
        stamp = props.get("time")
        when = (
            datetime.datetime.fromtimestamp(stamp / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(stamp, int)
            else "?"
        )
        click.echo(
            f"{when:<20} {event.get('event', '?'):<10} {props.get('outcome') or '-':<12} "
            f"{props.get('error_code') or '-':<24} {result}"
        )


@cli.command("log-pump", hidden=True)
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def log_pump(settings: Settings, path: Path) -> None:
    """Write TestGen's output to its rotating log (started by TestGen.launch)."""
    pump_rotating_log(sys.stdin.buffer, path, settings.app_log_max_bytes, APP_LOG_KEPT)


@analytics.command("send-spool", hidden=True)
@click.pass_obj
def analytics_send_spool(settings: Settings) -> None:
    """The detached sender (started by record_event)."""
    send_spool(Paths.from_environment(), settings)


def main(argv: list[str] | None = None) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_keyboard_interrupt)
    settings = Settings.from_environment()
    prog = "dk-installer" if settings.launched_by == "package" else "dk_installer.py"
    try:
        code = cli.main(args=argv, prog_name=prog, standalone_mode=False, obj=settings)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    os.environ.setdefault("DK_INSTALLER_LAUNCHED_BY", "direct")
    main()
