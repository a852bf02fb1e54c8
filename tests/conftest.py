"""Shared fixtures: stand-in TestGen wheels, a sandbox per test, and leak checks.

Every test that runs the installer gets its own HOME, DK_INSTALLER_HOME, XDG_CONFIG_HOME and
free ports. After a sandbox test that left processes running, the installer's own `stop` runs (it
must leave nothing), then any process whose command line or environment mentions the sandbox is a
leak: the test fails and the process is killed. Every test, sandbox or not, is also checked for
processes it left under pytest's temporary folder, so a leaking test never passes silently.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import itertools
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from pg_server import PostgresServer, postgres_bin

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "dk_installer.py"
FAKE_SOURCE = Path(__file__).parent / "fake_testgen" / "testgen"
FAKE_VERSIONS = ("5.0.0", "5.1.0")


# A shell that starts a command in the background without job control (`bash .ci/run &` in a
# script) makes it ignore SIGINT, and Python keeps an inherited ignore: then neither the tests that
# press Ctrl+C on this process nor the installers it starts (which inherit the ignore) would see it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def build_wheel(
    name: str,
    version: str,
    files: dict[str, bytes],
    dest: Path,
    requires: tuple[str, ...] = (),
    entry_points: bytes | None = None,
    extras: tuple[str, ...] = (),
) -> Path:
    """A real wheel with a correct RECORD, built with zipfile."""
    dist = name.replace("-", "_")
    dist_info = f"{dist}-{version}.dist-info"
    files = dict(files)
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.11\n"
        + "".join(f"Provides-Extra: {extra}\n" for extra in extras)
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: dk-installer-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if entry_points is not None:
        files[f"{dist_info}/entry_points.txt"] = entry_points
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if "/bin/" in path else 0o644) << 16  # tools stay runnable
            archive.writestr(info, data)
    return wheel


def build_fake_wheel(version: str, dest: Path, requires: tuple[str, ...] = ()) -> Path:
    """A wheel of the stand-in TestGen (`requires`: its dependencies, like streamlit's for the real one)."""
    source = FAKE_SOURCE.parent
    files = {
        p.relative_to(source).as_posix(): p.read_bytes()
        for p in sorted(source.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    # Where the stand-in's client tools find the machine's PostgreSQL (Debian's, in /usr/lib/postgresql).
    found = postgres_bin() or Path("/usr/lib/postgresql/15/bin")  # tests/run.sh installs it when missing
    files["testgen/_pgbin.py"] = f"PG_BIN = {str(found)!r}\n".encode()
    entry_points = b"[console_scripts]\ntestgen = testgen.__main__:main\n"
    return build_wheel("dataops-testgen", version, files, dest, requires, entry_points, ("standalone",))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real TestGen tests first, each on a worker of its own (the others keep their order): they
    take minutes each, and one handed out last would finish long after all the others. pytest-xdist
    first hands each worker two consecutive tests, so the real ones go to every other place."""
    real = [item for item in items if item.get_closest_marker("real") is not None]
    others = [item for item in items if item.get_closest_marker("real") is None]
    paired = [item for pair in zip(real, others) for item in pair]
    items[:] = paired + real[len(others) :] + others[len(real) :]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wheelhouse")
    for version in FAKE_VERSIONS:
        build_fake_wheel(version, directory)
    return directory


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uv cache for the whole run, shared by the xdist workers (uv locks what it writes): the
    real TestGen tests, on two workers, download and unpack TestGen's dependencies once."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "uv-cache"
    folder.mkdir(exist_ok=True)
    return folder


def worker_ports() -> Iterator[int]:
    """This xdist worker's own ports, below the kernel's ephemeral range (32768-60999 here), taken
    in turn. Ports the kernel picked (bind to port 0) collided: it gave the same port twice in a row
    (a UI and an API port came out equal), and a port one worker had picked and not yet used to
    another worker's TestGen, which took it first."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    first = 20000 + 1000 * (worker % 12)
    return itertools.cycle(range(first, first + 1000))


WORKER_PORTS = worker_ports()


def free_ports(count: int) -> list[int]:
    """`count` different ports of this worker's own that nothing listens on or holds now."""
    ports: list[int] = []
    while len(ports) < count:
        port = next(WORKER_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def processes_mentioning(folder: str) -> list[tuple[int, str]]:
    """Live processes whose command line or environment mentions `folder` (a sandbox path; the
    detached analytics sender names no path in its arguments, only in its environment). Matched
    as a folder, so that /tmp/pytest-5 never matches another session's /tmp/pytest-50."""
    mention = re.compile(re.escape(folder.rstrip("/")) + r"(?=$|[/\s\0:])")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                environ = (entry / "environ").read_bytes().decode(errors="replace")
                stat = (entry / "stat").read_text()
                alive = stat.rsplit(")", 1)[1].split()[0] != "Z"
                if alive and (mention.search(cmdline) or mention.search(environ)):
                    found.append((int(entry.name), cmdline.strip()))
    return found


def machine_path(bin_dir: Path) -> str:
    """PATH for the installer under test: this machine's, where this Python is python3.11 and
    python3 the way a distribution installs them (in `bin_dir`), without pyenv's shims. Each look
    through a shim runs dozens of bash processes (pyenv-exec, pyenv-version-name, ...), and every
    preflight looks for four Pythons: that was most of the CPU of a stand-in install, and of the
    suite. Sandboxes share one `bin_dir` where they can: uv then knows the interpreter from its
    cache instead of starting it to ask (~90 ms CPU per install)."""
    bin_dir.mkdir(exist_ok=True)
    for name in ("python3.11", "python3"):
        with contextlib.suppress(FileExistsError):  # another xdist worker made it
            (bin_dir / name).symlink_to(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    kept = [entry for entry in os.environ["PATH"].split(os.pathsep) if "/.pyenv/" not in entry + "/"]
    return os.pathsep.join([str(bin_dir), *kept])


# How a sandbox runs the installer. The package: what the runtime venv runs once the downloaded file
# has handed over (`python -I -m dk_installer`, byte-compiled, with the hand-over's environment).
# The file: the download itself, as users start it; end-to-end modules take it (single_file marker).
PACKAGE_COMMAND = (sys.executable, "-I", "-m", "dk_installer")
FILE_COMMAND = (sys.executable, str(INSTALLER))


class Sandbox:
    """One isolated user: its own HOME, installer home, config dir and ports; PATH as on a machine
    without pyenv (machine_path). It runs the package, or with `single_file` the downloaded file."""

    def __init__(
        self,
        root: Path,
        wheelhouse: Path,
        uv_cache: Path,
        single_file: bool = False,
        python_bin: Path | None = None,
    ) -> None:
        self.root = root
        self.command = FILE_COMMAND if single_file else PACKAGE_COMMAND
        self.wheelhouse = wheelhouse
        self.user_home = root / "user"
        self.home = root / "dk-home"
        self.config = root / "config"
        self.user_home.mkdir()
        self.ui_port, self.api_port = free_ports(2)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DK_INSTALLER", "FAKE_TESTGEN"))}
        for name in ("DO_NOT_TRACK", "NO_COLOR", "VIRTUAL_ENV", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "CI"):
            env.pop(name, None)
        env.update(
            HOME=str(self.user_home),
            DK_INSTALLER_HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.config),
            DK_INSTALLER_ANALYTICS="no",
            UV_CACHE_DIR=str(uv_cache),
            PYTHONDONTWRITEBYTECODE="1",
            PATH=machine_path(python_bin or root / "python-bin"),
        )
        if not single_file:
            env.update(DK_INSTALLER_PYTHON=sys.executable, DK_INSTALLER_SCRIPT=str(INSTALLER))
        self.env = env

    def merged_env(self, env: dict[str, str | None] | None) -> dict[str, str]:
        """The sandbox environment with `env` applied; a None value removes a variable."""
        merged = {**self.env, **(env or {})}
        return {k: v for k, v in merged.items() if v is not None}

    def run(
        self,
        *args: str,
        env: dict[str, str | None] | None = None,
        timeout: float = 300,
        input: str | None = None,
        cwd: Path | None = None,
        umask: int = -1,
    ) -> subprocess.CompletedProcess[str]:
        """`umask`: the one the user's shell would hand the installer (-1: this process's)."""
        return subprocess.run(
            [*self.command, *args],
            env=self.merged_env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            umask=umask,
        )

    def popen(self, *args: str, env: dict[str, str | None] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.command, *args],
            env=self.merged_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def install_args(self, *extra: str) -> list[str]:
        return [
            "install",
            "--find-links",
            str(self.wheelhouse),
            "--port",
            str(self.ui_port),
            "--api-port",
            str(self.api_port),
            "--no-browser",
            *extra,
        ]

    def install(
        self, *extra: str, env: dict[str, str | None] | None = None, umask: int = -1
    ) -> subprocess.CompletedProcess[str]:
        return self.run(*self.install_args(*extra), env=env, umask=umask)

    def state(self) -> dict:
        return json.loads((self.home / "state.json").read_text())

    def status(self) -> dict:
        result = self.run("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def password(self) -> str:
        text = (self.home / "credentials.txt").read_text()
        return next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Password:")
        )

    def processes(self) -> list[tuple[int, str]]:
        return processes_mentioning(str(self.root))


@functools.cache
def bare_python() -> str:
    """An interpreter without click/requests/distro: Python 3.9, the oldest one supported."""
    for candidate in ("python3.9", *sorted(Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9"))):
        path = shutil.which(str(candidate)) if isinstance(candidate, str) else str(candidate)
        if path:
            # The interpreter itself, not pyenv's shim (a bash script that runs a dozen more).
            where = [path, "-c", "import sys; print(sys.executable)"]
            found = subprocess.run(where, capture_output=True, text=True)
            if found.returncode == 0:
                return found.stdout.strip()
    pytest.fail("no Python 3.9 on this machine: the bootstrap cannot be tested")


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 120) -> None:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if ready:
            line = process.stderr.readline()
            seen.append(line)
            if text in line:
                return
            if not line and process.poll() is not None:
                break
    pytest.fail(f"never saw {text!r}; stderr so far: {''.join(seen)}")


def listening_addresses(sandbox: Sandbox, ports: tuple[int, ...] = ()) -> dict[int, set[str]]:
    """The addresses the app's UI and API ports (or `ports`) listen on."""
    found: dict[int, set[str]] = {port: set() for port in ports or (sandbox.ui_port, sandbox.api_port)}
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port in found:
            found[connection.laddr.port].add(connection.laddr.ip)
    return found


def kill_all(processes: list[tuple[int, str]]) -> None:
    for pid, _ in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if processes:
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def no_process_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test: nothing it started under this worker's temporary folder outlives it (open
    sandboxes, outside that folder, have the sandbox check)."""
    root = str(tmp_path_factory.getbasetemp())
    before = {pid for pid, _ in processes_mentioning(root)}
    yield
    deadline = time.monotonic() + 12  # a detached analytics sender may be finishing its bounded life
    while time.monotonic() < deadline:
        leaked = [(pid, cmd) for pid, cmd in processes_mentioning(root) if pid not in before]
        if not any("send-spool" in cmd for _, cmd in leaked):
            break
        time.sleep(0.2)
    kill_all(leaked)
    if leaked:
        pytest.fail(f"test left processes running: {leaked}")


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A second local user, as the other person on a shared machine; removed afterwards."""
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not available: no second local user to test with")
    name = f"dkitest{os.getpid()}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
        assert name not in {entry.pw_name for entry in pwd.getpwall()}, f"could not remove the user {name}"


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder like /tmp (mode 1777, root's) that the second user can reach: pytest's own temp
    root is 0700."""
    folder = Path(tempfile.mkdtemp(prefix="dk-installer-shared-"))
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def sandbox(
    request: pytest.FixtureRequest, tmp_path: Path, wheelhouse: Path, uv_cache: Path
) -> Iterator[Sandbox]:
    shared_bin = uv_cache.parent / "python-bin"
    yield from sandbox_at(tmp_path, wheelhouse, uv_cache, runs_single_file(request), shared_bin)


@pytest.fixture
def open_sandbox(request: pytest.FixtureRequest, wheelhouse: Path, uv_cache: Path) -> Iterator[Sandbox]:
    """A sandbox outside pytest's private (0700) temp root: as root, the real TestGen's PostgreSQL
    runs as a `pgserver` user that must be able to reach its binaries and data."""
    root = Path(tempfile.mkdtemp(prefix="dk-installer-test-"))
    root.chmod(0o755)
    try:
        yield from sandbox_at(root, wheelhouse, uv_cache, runs_single_file(request))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def runs_single_file(request: pytest.FixtureRequest) -> bool:
    return any(request.node.get_closest_marker(name) for name in ("single_file", "real"))


def sandbox_at(
    root: Path, wheelhouse: Path, uv_cache: Path, single_file: bool = False, python_bin: Path | None = None
) -> Iterator[Sandbox]:
    """`python_bin`: a folder of python3.11 and python3 shared with other sandboxes (open sandboxes,
    outside pytest's private folder, keep their own beside them)."""
    box = Sandbox(root, wheelhouse, uv_cache, single_file, python_bin)
    yield box
    # A test may end with TestGen running: then the installer's own stop ends it, and must leave
    # nothing. With nothing running there is nothing to stop (and no installer start-up to pay).
    installed = (box.home / "state.json").exists() or (box.home / "testgen").exists()
    if installed and any("send-spool" not in command for _, command in box.processes()):
        box.run("stop", timeout=120)
    # A detached analytics sender may still be finishing its (bounded) life.
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and any("send-spool" in c for _, c in box.processes()):
        time.sleep(0.2)
    leaked = box.processes()
    kill_all(leaked)
    if leaked:
        pytest.fail(f"test left processes running: {leaked}")


def write_as(user: pwd.struct_passwd, path: Path, data: bytes) -> None:
    """`cat > path`, run as that user."""
    subprocess.run(
        ["sh", "-c", 'cat > "$1"', "sh", str(path)],
        input=data,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        check=True,
    )


def postgres_session(tls: bool) -> Iterator[PostgresServer]:
    server = PostgresServer(free_port(), tls=tls)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (SCRAM-SHA-256, 127.0.0.1, no TLS), one per xdist worker. Tests make
    their own roles and databases, with unique names."""
    yield from postgres_session(tls=False)


@pytest.fixture(scope="session")
def postgres_tls_server() -> Iterator[PostgresServer]:
    """Like postgres_server, but it accepts TLS connections only (pg_hba.conf `hostssl`), with a
    certificate for 127.0.0.1 and localhost from a test CA (`ca_file`)."""
    yield from postgres_session(tls=True)
