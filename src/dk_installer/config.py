"""What the installer reads and keeps: Settings (the environment, read once per command), the
install receipt (state.json), the user's saved choices, the lock that lets one mutating command
run at a time, the install options, and writing files atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dk_installer import __version__
from dk_installer.bootstrap import ca_named_by_user, index_url_from_environment
from dk_installer.defaults import ALL_ADDRESSES, DEFAULT_API_PORT, DEFAULT_UI_PORT, LOOPBACK
from dk_installer.errors import InstallerError, StateCorrupt

log = logging.getLogger("dk_installer")


STATE_SCHEMA = 1
MIN_FREE_DISK_BYTES = 3 * 1024**3
START_TIMEOUT_S = 120.0
DEFAULT_INDEX_URL = "https://pypi.org/simple"
ANALYTICS_BASE_URL = "https://api.mixpanel.com"
# Where install.sh downloads dk_installer.py and its checksum (its default_base_url), and so
# self-update too; DK_INSTALLER_BASE_URL names a mirror.
INSTALLER_BASE_URL = "https://raw.githubusercontent.com/DataKitchen/dk-installer/main"
MIXPANEL_TOKEN = "b1a0a4e8ef2f4f1f9a6e0e4c7d2f6a91"
LOG_FILES_KEPT = 20
APP_LOG_MAX_BYTES = 10 * 1024**2  # logs/testgen-app.log is rotated at this size ...
APP_LOG_KEPT = 5  # ... keeping this many older files (testgen-app.log.1 to .5)
LAUNCHERS = ("install.sh", "direct", "package", "launcher")
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
    https_proxy: str | None = None  # masked: a proxy URL may carry a password
    failpoint: str | None = None
    app_log_max_bytes: int = APP_LOG_MAX_BYTES
    installer_base_url: str = INSTALLER_BASE_URL

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
            index_url=index_url_from_environment(env),
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
            ca_from_environment=ca_named_by_user(env),
            https_proxy=mask_userinfo(env.get("HTTPS_PROXY") or env.get("https_proxy") or "") or None,
            failpoint=env.get("DK_INSTALLER_FAILPOINT") or None,
            app_log_max_bytes=int(env.get("DK_INSTALLER_APP_LOG_MAX_BYTES") or APP_LOG_MAX_BYTES),
            installer_base_url=(env.get("DK_INSTALLER_BASE_URL") or INSTALLER_BASE_URL).rstrip("/"),
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


_JSON_TYPES: dict[str, type] = {"int": int, "str": str, "bool": bool, "None": type(None)}


def json_value_fits(annotation: str, value: Any) -> bool:
    """Does a JSON value fit a field annotated `int`, `str | None`, `list[str]`, ...? (a bool is
    not an int)."""
    if annotation.strip() == "list[str]":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
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
    database: str = ""  # the server holding TestGen's data (its URL, no password); "" = embedded
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


class SavedChoices:
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
    def holder(path: Path) -> tuple[str, int | None] | None:
        """The action and pid of the running command that holds the lock, or None when none
        does. For read-only commands, which never take it ("another command" when the holder has
        not written its name yet)."""
        import fcntl

        try:
            with open(path) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    written = re.fullmatch(r"(\w+) \(pid (\d+)\)", handle.read().strip())
                    return (written[1], int(written[2])) if written else ("another command", None)
        except OSError:
            return None
        return None

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            self._handle.close()
            self._handle = None


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
    bundle: Path | None = None  # install from this bundle (`bundle --output`), offline
    # TestGen's data on the user's PostgreSQL server (postgresql://USER@HOST:PORT/DBNAME), not embedded
    database: str | None = None
    database_sslmode: str | None = None
    database_ca_file: str | None = None
    database_admin_user: str | None = None
    database_password_file: str | None = None
    database_admin_password_file: str | None = None
    database_keys_file: str | None = None  # the keys of the install that made a schema to reuse


def close_lock_files_to_others(top: Path) -> None:
    """Take group and other write access from the lock files under `top` that tools create 0666
    on purpose whatever the umask (uv, in its cache and in each venv). Everything else there was
    made under the umask the installer tightened at start. Only a regular file of this user,
    opened without following a link. Cheap: the walk reads folders only (d_type tells what is a
    folder) and looks closer at lock files alone, so a real install's ~100k files cost a readdir
    each, not a stat."""
    import stat

    folders = [top]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
            elif entry.name.endswith((".lock", "lockfile")):  # uv's .lock, <wheel>.lock; fasteners'
                with contextlib.suppress(OSError):
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    try:
                        info = os.fstat(fd)
                        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o022:
                            os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~0o022)
                    finally:
                        os.close(fd)


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


REDACTED = "[REDACTED]"  # what stands where a secret was, in logs, messages and the support zip
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s'\"<>]+@")


def mask_userinfo(text: str) -> str:
    """The user and password of every URL in `text` masked (`https://user:token@host/…` ->
    `https://[REDACTED]@host/…`): the one rule for URLs with credentials, which the runner's
    redactor applies to everything it stores or shows."""
    return _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", text)
