"""install.sh, run for real under dash, bash and busybox ash.

The download path is served by a local HTTP(S) server; the installer it runs is the repository's real
dk_installer.py, installing the stand-in TestGen wheel in a sandbox. Failure paths prove that
nothing ran: no request reached the server, no installer home, no temporary files left, and a
DK_PYTHON wrapper that records every interpreter start recorded no `install`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from conftest import INSTALLER, ROOT, Sandbox, free_port, write_as
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

pytestmark = pytest.mark.single_file  # end-to-end: the downloaded file, as users run it

INSTALL_SH = ROOT / "install.sh"
SHELLS = {"dash": ("dash",), "bash": ("bash",), "busybox": ("busybox", "sh")}
# What install.sh calls besides a Python and a downloader; a PATH of only these (symlinked) lets a
# test take curl, wget or Python away.
TOOLS = "uname sed tr cut mkdir cp chmod mv rm mktemp grep cat sha256sum timeout readlink id ls"
INSTALLER_BYTES = INSTALLER.read_bytes()
INSTALLER_SHA256 = hashlib.sha256(INSTALLER_BYTES).hexdigest()


# --- Fixtures and helpers -------------------------------------------------------------------------

# Debian packages of the tools the tests use beyond coreutils (tests/run.sh installs them).
PACKAGES = {
    "shellcheck": "shellcheck",
    "busybox": "busybox",
    "dash": "dash",
    "curl": "curl",
    "wget": "wget",
    "openssl": "openssl",
    "shasum": "perl",
}


def need(tool: str) -> str:
    """The path of a tool the tests need; a missing one fails the test (it is never skipped)."""
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed: apt-get install {PACKAGES.get(tool, 'coreutils')}")
    return found


@pytest.fixture(params=list(SHELLS))
def shell(request: pytest.FixtureRequest) -> list[str]:
    argv = list(SHELLS[request.param])
    return [need(argv[0]), *argv[1:]]


def start_server(ssl_context: ssl.SSLContext | None = None) -> HTTPServer:
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=ssl_context)
    server.no_handler_status_code = 404
    server.start()
    return server


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    srv = start_server()
    yield srv
    srv.clear()
    srv.stop()


def serve(server: HTTPServer, checksum: str | None = f"{INSTALLER_SHA256}  dk_installer.py\n") -> str:
    """Serve the real dk_installer.py and, unless None (a 404), the given checksum file."""
    server.expect_request("/dk_installer.py").respond_with_data(INSTALLER_BYTES)
    if checksum is not None:
        server.expect_request("/dk_installer.py.sha256").respond_with_data(checksum)
    return server.url_for("/").rstrip("/")


def requested(server: HTTPServer) -> list[str]:
    return [request.path for request, _ in server.log]


class Run:
    """One user running install.sh: a sandbox, a temp dir (TMPDIR) and a directory of scripts."""

    def __init__(self, sandbox: Sandbox, shell: list[str], tmp_path: Path) -> None:
        self.sandbox = sandbox
        self.shell = shell
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.scripts = tmp_path / "download"  # install.sh alone: no dk_installer.py beside it
        self.scripts.mkdir()
        self.script = self.scripts / "install.sh"
        shutil.copy(INSTALL_SH, self.script)
        self.python_log = tmp_path / "python-starts.jsonl"
        self.python = write_python_wrapper(tmp_path / "python-wrapper", self.python_log)

    def env(self, base_url: str | None = None, **extra: str | None) -> dict[str, str]:
        values: dict[str, str | None] = {"DK_PYTHON": str(self.python), "TMPDIR": str(self.tmpdir)}
        if base_url is not None:
            values["DK_INSTALLER_BASE_URL"] = base_url
        return self.sandbox.merged_env({**values, **extra})

    def run(
        self,
        *args: str,
        env: dict[str, str],
        script: Path | None = None,
        cwd: Path | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """`sh install.sh ARGS`, stdin /dev/null."""
        return subprocess.run(
            [*self.shell, str(script or self.script), *args],
            env=env,
            cwd=cwd or self.tmpdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def pipe(
        self, text: str, *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`curl ... | sh -s -- ARGS`: the script arrives on stdin."""
        return subprocess.run(
            [*self.shell, "-s", "--", *args],
            input=text,
            env=env,
            cwd=cwd or self.tmpdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def starts(self) -> list[dict]:
        """Every start of the DK_PYTHON wrapper: its interpreter options (`flags`, such as -I), the
        rest of its arguments (`args`: a script or -c and what follows), stdin, working directory and
        a few environment variables."""
        if not self.python_log.exists():
            return []
        starts = [json.loads(line) for line in self.python_log.read_text().splitlines()]
        for start in starts:
            argv = start.pop("argv")
            flags = []
            while argv and argv[0].startswith("-") and argv[0] != "-c":
                flags.append(argv.pop(0))
            start["flags"], start["args"] = flags, argv
        return starts

    def installer_starts(self) -> list[dict]:
        return [s for s in self.starts() if s["args"][1:2] == ["install"]]

    def assert_nothing_installed(self) -> None:
        assert self.installer_starts() == []
        assert not self.sandbox.home.exists()
        assert list(self.tmpdir.iterdir()) == []  # the trap removed the downloads


@pytest.fixture
def user(sandbox: Sandbox, shell: list[str], tmp_path: Path) -> Run:
    return Run(sandbox, shell, tmp_path)


def write_python_wrapper(path: Path, log: Path, real: str = sys.executable) -> Path:
    """A Python that records each start (arguments, stdin, working directory, environment) and then
    runs the real one. The recorder runs isolated (-I): a hostile current folder cannot touch it."""
    record = (
        "import json, os, sys; open(sys.argv[1], 'a').write(json.dumps("
        "{'argv': sys.argv[3:], 'stdin': sys.argv[2], 'cwd': os.getcwd(),"
        " 'env': {k: os.environ.get(k) for k in ('DK_INSTALLER_LAUNCHED_BY', 'DO_NOT_TRACK',"
        " 'DK_INSTALLER_ANALYTICS')}}) + '\\n')"
    )
    path.write_text(
        "#!/bin/sh\n"
        f"stdin=$({need('readlink')} /proc/$$/fd/0)\n"
        f'"{real}" -I -c "{record}" "{log}" "$stdin" "$@" </dev/null\n'
        f'exec "{real}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def write_fake_python(path: Path, version: str, venv_works: bool = True) -> Path:
    """A stand-in interpreter that only answers install.sh's questions."""
    path.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *--version*|*-V*) echo "Python {version}"; exit 0 ;; esac\n'
        f'case "$*" in *version_info*) echo "{version}"; exit 0 ;; esac\n'
        f'case "$*" in *ensurepip*) exit {0 if venv_works else 1} ;; esac\n'
        "exit 1\n"
    )
    path.chmod(0o755)
    return path


def write_broken_shim(path: Path) -> Path:
    """What a pyenv shim for an absent version does."""
    path.write_text(f'#!/bin/sh\necho "pyenv: {path.name}: command not found" >&2\nexit 127\n')
    path.chmod(0o755)
    return path


def make_bin(directory: Path, *tools: str) -> Path:
    """A directory of symlinks to TOOLS (and `tools`), to be the whole PATH."""
    directory.mkdir(exist_ok=True)
    for tool in (*TOOLS.split(), *tools):
        (directory / tool).symlink_to(need(tool))
    return directory


def body(tmp_path: Path) -> Path:
    """install.sh without its { } group's braces and the call of main: sourcing it defines the
    functions and runs nothing."""
    lines = INSTALL_SH.read_text().splitlines(keepends=True)
    assert lines[-2:] == ['main "$@" || exit 1\n', "}\n"]
    lines.remove("{\n")
    path = tmp_path / "install-functions.sh"
    path.write_text("".join(lines[:-2]))
    return path


def call(
    shell: list[str],
    tmp_path: Path,
    snippet: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `snippet` in `shell` after sourcing install.sh's functions."""
    script = f'. "{body(tmp_path)}"\nsetup_colours\n{snippet}\n'
    return subprocess.run(
        [*shell, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env or {"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )


# --- Static checks --------------------------------------------------------------------------------


def test_shellcheck_clean() -> None:
    result = subprocess.run([need("shellcheck"), "-s", "sh", str(INSTALL_SH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_structure_everything_in_functions() -> None:
    text = INSTALL_SH.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[-2:] == ['main "$@" || exit 1', "}"]
    # One { } group holds everything but the leading comments (a truncated download runs nothing);
    # inside it, outside function bodies, there are only comments, `set -u` and the call of main.
    opening = lines.index("{")
    assert all(not line.strip() or line.startswith("#") for line in lines[1:opening])
    in_function = False
    for line in lines[opening + 1 : -2]:
        if in_function:
            in_function = line != "}"
        elif line.strip() and not line.startswith("#"):
            assert line == "set -u" or line.endswith("() {"), line
            in_function = line.endswith("() {")
    assert not in_function
    # sudo appears only in printed hints; no shell start-up file is touched.
    assert all(
        line.lstrip().startswith(("hint ", "apt)", "dnf)"))
        for line in lines
        if "sudo " in line and not line.startswith("#")
    )
    assert not any(rc in text for rc in (".bashrc", ".profile", ".zshrc"))


# --- The download path ----------------------------------------------------------------------------


def test_download_verify_copy_and_install(user: Run, server: HTTPServer) -> None:
    box = user.sandbox
    base = serve(server)
    result = user.run(
        *box.install_args("--no-demo", "--no-start")[1:],
        env=user.env(base),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert requested(server) == ["/dk_installer.py", "/dk_installer.py.sha256"]
    state = box.state()
    assert (state["ui_port"], state["api_port"]) == (box.ui_port, box.api_port)  # arguments passed through
    copy = box.home / "dk_installer.py"
    assert copy.read_bytes() == INSTALLER_BYTES
    assert f"{user.python} {copy} status" in result.stdout
    # The copy is what ran, so the installer's own hints point at it too.
    [start] = user.installer_starts()
    assert start["args"][0] == str(copy)
    assert list(user.tmpdir.iterdir()) == []


# --- The closing hint (issue 14, item 4) -----------------------------------------------------------


def closing_hint(stdout: str) -> str:
    """The command install.sh's last lines name: `<command> status    (also: ...)`."""
    line = stdout.rsplit("Manage TestGen with:", 1)[1].strip().splitlines()[0]
    return line.split(" status    (also:")[0].strip()


def installer_hint(stdout: str) -> str:
    """The command the installer's own summary names (`Stop:       <command> stop`)."""
    [line] = [line for line in stdout.splitlines() if line.strip().startswith("Stop:")]
    return line.split(":", 1)[1].strip().removesuffix(" stop")


@pytest.mark.parametrize(
    "where", ["local-bin", "xdg-bin-home", "symlink-on-path", "not-on-path", "another-first"]
)
def test_closing_hint_names_the_command_as_the_installer_does(
    user: Run, server: HTTPServer, tmp_path: Path, where: str
) -> None:
    """`dk-installer status` when `dk-installer` on PATH is the launcher this install wrote (found
    through a symlink too); the full `<python> <home>/dk_installer.py` otherwise, also when another
    `dk-installer` comes first on PATH."""
    box = user.sandbox
    launcher_dir = box.user_home / ".local" / "bin"
    extra: dict[str, str] = {}
    path = [os.environ["PATH"]]
    if where == "xdg-bin-home":
        launcher_dir = tmp_path / "xdg-bin"
        extra["XDG_BIN_HOME"] = str(launcher_dir)
    if where in ("local-bin", "xdg-bin-home"):
        path.insert(0, str(launcher_dir))
    elif where == "symlink-on-path":
        links = tmp_path / "links"
        links.mkdir()
        (links / "dk-installer").symlink_to(launcher_dir / "dk-installer")
        path.insert(0, str(links))
    elif where == "another-first":
        other = tmp_path / "other-bin"
        other.mkdir()
        (other / "dk-installer").write_text("#!/bin/sh\n# dk-installer launcher: someone else's\nexit 1\n")
        (other / "dk-installer").chmod(0o755)
        path[:0] = [str(other), str(launcher_dir)]
    env = user.env(serve(server), PATH=os.pathsep.join(path), **extra)
    result = user.run(*box.install_args("--no-demo", "--no-start")[1:], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (launcher_dir / "dk-installer").is_file()
    if where in ("local-bin", "xdg-bin-home", "symlink-on-path"):
        assert closing_hint(result.stdout) == "dk-installer"
        assert installer_hint(result.stdout) == "dk-installer"  # one form, in both places
    else:
        assert closing_hint(result.stdout) == f"{user.python} {box.home / 'dk_installer.py'}"
        assert installer_hint(result.stdout) != "dk-installer"


@pytest.mark.parametrize(
    "checksum",
    [
        f"{INSTALLER_SHA256}\n",
        f"{INSTALLER_SHA256.upper()}  dk_installer.py\r\n",
        f"{INSTALLER_SHA256} *dk_installer.py\n",
        f"\n{INSTALLER_SHA256}  dk_installer.py\n",
    ],
    ids=["bare-hex", "upper-crlf", "binary-mark", "leading-blank-line"],
)
def test_checksum_formats_accepted(user: Run, server: HTTPServer, checksum: str) -> None:
    result = user.run("--help", env=user.env(serve(server, checksum)))
    assert result.returncode == 0, result.stderr
    assert "Checksum verified" in result.stdout
    assert len(user.installer_starts()) == 1


@pytest.mark.parametrize(
    ("checksum", "message"),
    [
        (f"{hashlib.sha256(b'something else').hexdigest()}  dk_installer.py\n", "Checksum mismatch"),
        (None, "dk_installer.py.sha256"),
        ("<html>Not here</html>\n", "not a SHA-256"),
        ("", "not a SHA-256"),
        (f"{INSTALLER_SHA256}  other.py\n", "other.py"),
    ],
    ids=["mismatch", "missing-404", "garbage", "empty", "other-file"],
)
def test_bad_checksum_runs_nothing(user: Run, server: HTTPServer, checksum: str | None, message: str) -> None:
    result = user.run("--no-browser", env=user.env(serve(server, checksum)))
    assert result.returncode != 0
    assert message in result.stderr
    assert "refusing" in result.stderr.lower()
    assert "/dk_installer.py" in requested(server)
    user.assert_nothing_installed()


def test_interrupted_download_cleans_up(user: Run, server: HTTPServer) -> None:
    downloading = threading.Event()

    def slow(_request: Request) -> Response:
        downloading.set()
        time.sleep(1.5)
        return Response(INSTALLER_BYTES)

    server.expect_request("/dk_installer.py").respond_with_handler(slow)
    process = subprocess.Popen(
        [*user.shell, str(user.script)],
        env=user.env(server.url_for("/")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert downloading.wait(20), "install.sh never started the download"
    assert list(user.tmpdir.iterdir()), "install.sh never made its temporary directory"
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    process.communicate()
    user.assert_nothing_installed()


# --- Running nothing when cut short ---------------------------------------------------------------


def cut_points() -> list[int]:
    """Every byte offset of the last 400 bytes (where a cut could leave `main` without its
    arguments), and the start, a quarter, half and three quarters of the script. Cutting only the
    final newline leaves the whole script, which must run: the control test covers that."""
    size = len(INSTALL_SH.read_bytes())
    return sorted({1, size // 4, size // 2, size * 3 // 4, *range(size - 400, size - 1)})


def test_truncated_script_runs_nothing_at_any_cut(user: Run, server: HTTPServer) -> None:
    text = INSTALL_SH.read_bytes()
    env = user.env(serve(server))
    ran = []
    for cut in cut_points():
        result = subprocess.run(
            [*user.shell, "-s", "--", "--no-analytics", "--no-browser"],
            input=text[:cut],
            env=env,
            cwd=user.tmpdir,
            capture_output=True,
            timeout=60,
        )
        if requested(server) or user.starts() or result.stdout:  # a syntax error only writes to stderr
            ran.append(cut)
    assert ran == [], f"these truncations ran something: {ran}"
    user.assert_nothing_installed()


def test_truncation_check_sees_a_complete_script_run(user: Run, server: HTTPServer) -> None:
    """The control for the test above: the same harness with the whole script does see it all."""
    result = user.pipe(INSTALL_SH.read_text(), "--help", env=user.env(serve(server)), timeout=120)
    assert result.returncode == 0, result.stderr
    assert requested(server) == ["/dk_installer.py", "/dk_installer.py.sha256"]
    assert user.starts() != [] and len(user.installer_starts()) == 1


# --- curl | sh ------------------------------------------------------------------------------------


def test_piped_install_does_not_hang_and_detaches_stdin(
    user: Run, server: HTTPServer, tmp_path: Path
) -> None:
    box = user.sandbox
    # Piped, $0 is the shell, so a dk_installer.py in the current directory must not be used.
    cwd = tmp_path / "some-dir"
    cwd.mkdir()
    (cwd / "dk_installer.py").write_text("raise SystemExit('the wrong installer ran')\n")
    result = user.pipe(
        INSTALL_SH.read_text(),
        *box.install_args("--no-demo", "--no-start")[1:],
        env=user.env(serve(server)),
        cwd=cwd,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert requested(server) == ["/dk_installer.py", "/dk_installer.py.sha256"]
    assert box.state()["ui_port"] == box.ui_port
    [start] = user.installer_starts()
    assert start["stdin"] == "/dev/null"  # not the pipe the script came through
    assert (box.home / "dk_installer.py").read_bytes() == INSTALLER_BYTES


def test_terminal_stdin_is_kept_for_questions(user: Run, tmp_path: Path) -> None:
    code, output = run_on_terminal([*user.shell, str(INSTALL_SH), "--help"], user.env(), stdin=True)
    assert code == 0, output
    [start] = user.installer_starts()
    assert start["stdin"].startswith("/dev/pts/")


def test_installer_exit_code_is_install_sh_exit_code(user: Run, server: HTTPServer) -> None:
    result = user.run("--port", "0", env=user.env(serve(server)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--port" in result.stderr  # the installer's own usage error
    assert len(user.installer_starts()) == 1
    assert "Manage TestGen with" not in result.stdout
    assert not (user.sandbox.home / "state.json").exists()


def test_exports_launched_by_and_passes_opt_outs_through(user: Run, server: HTTPServer) -> None:
    env = user.env(serve(server), DO_NOT_TRACK="1", DK_INSTALLER_ANALYTICS="no")
    result = user.run("--no-analytics", "--help", env=env)
    assert result.returncode == 0, result.stderr
    [start] = user.installer_starts()
    assert start["args"][1:] == ["install", "--no-analytics", "--help"]
    assert start["env"] == {
        "DK_INSTALLER_LAUNCHED_BY": "install.sh",
        "DO_NOT_TRACK": "1",
        "DK_INSTALLER_ANALYTICS": "no",
    }


# --- The current folder is not trusted (issue 15, item 1) -----------------------------------------

# What the Pythons install.sh starts would import from a current folder that is on their path: the
# modules its probes ask for, and the ones Python imports on its own while it starts.
HOSTILE_MODULES = ("venv", "ensurepip", "click", "requests", "distro", "sitecustomize", "usercustomize")
# `encodings` is imported before open() exists: it leaves its marker with os.open, then runs the
# real package so that the Python it got into keeps working.
ENCODINGS_SHADOW = """\
import os
_fd = os.open(os.path.join({markers!r}, "encodings-%d" % os.getpid()), os.O_WRONLY | os.O_CREAT, 0o644)
os.close(_fd)
_real = os.path.join(os.path.dirname(os.__file__), "encodings")
__path__[:] = [_real]
__file__ = os.path.join(_real, "__init__.py")
_fd = os.open(__file__, os.O_RDONLY)
_source = b""
while True:
    _chunk = os.read(_fd, 65536)
    if not _chunk:
        break
    _source += _chunk
os.close(_fd)
exec(compile(_source, __file__, "exec"))
"""


def hostile_folder(folder: Path, markers: Path) -> Path:
    """A current folder whose Python files, if imported, leave a marker named after the module."""
    folder.mkdir()
    markers.mkdir()
    for name in HOSTILE_MODULES:
        (folder / f"{name}.py").write_text(
            "import os, sys\n"
            f"open(os.path.join({str(markers)!r}, '{name}-%d' % os.getpid()), 'w')"
            ".write(repr(getattr(sys, 'argv', None)))\n"
        )
    (folder / "encodings").mkdir()
    (folder / "encodings" / "__init__.py").write_text(ENCODINGS_SHADOW.format(markers=str(markers)))
    return folder


@pytest.mark.parametrize("how", ["install", "pythonpath-help"])
def test_hostile_current_folder_is_never_imported(
    user: Run, server: HTTPServer, tmp_path: Path, how: str
) -> None:
    """`sh install.sh` from a folder someone else filled: none of its files is imported, and the
    install goes on. With `export PYTHONPATH=$PYTHONPATH:/opt/lib` run while PYTHONPATH was unset,
    the empty entry puts the current folder first on every Python's path, before the standard
    library (only `--help` there: the installer's own children are not install.sh's business)."""
    box = user.sandbox
    markers = tmp_path / "markers"
    here = hostile_folder(tmp_path / "shared-folder", markers)
    if how == "install":
        args, extra = box.install_args("--no-demo", "--no-start")[1:], {}
    else:
        args, extra = ["--help"], {"PYTHONPATH": ":/nonexistent"}
    result = user.run(*args, env=user.env(serve(server), **extra), cwd=here)
    imported = {marker.name: marker.read_text() for marker in markers.iterdir()}
    assert imported == {}, f"install.sh's Pythons imported from the current folder: {imported}"
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(user.installer_starts()) == 1
    if how == "install":
        assert box.state()["ui_port"] == box.ui_port


def test_every_python_start_is_isolated(user: Run, server: HTTPServer, tmp_path: Path) -> None:
    """The probes start isolated in a private empty folder; the installer isolated (-I) in the
    current folder, so that relative paths in its options keep their meaning."""
    here = tmp_path / "here"
    here.mkdir()
    result = user.run("--help", env=user.env(serve(server)), cwd=here)
    assert result.returncode == 0, result.stderr
    starts = user.starts()
    [installer] = user.installer_starts()
    probes = [start for start in starts if start["args"][:1] == ["-c"]]
    assert len(probes) + 1 == len(starts), starts
    [version] = [probe for probe in probes if "version_info" in probe["args"][1]]
    assert version["flags"] == ["-E", "-s"]  # the probe may meet a Python older than 3.4 (no -I)
    assert any("ensurepip" in probe["args"][1] for probe in probes)
    for probe in probes:
        assert probe["flags"] in (["-I"], ["-E", "-s"]), probe
        private = Path(probe["cwd"])
        assert private.name == "cwd" and private.parent.parent == user.tmpdir, probe
    assert installer["flags"] == ["-I"]
    assert installer["cwd"] == str(here)
    assert list(user.tmpdir.iterdir()) == []  # the private folder went with the downloads


# --- From a clone ---------------------------------------------------------------------------------


def test_from_clone_uses_the_local_installer(user: Run) -> None:
    box = user.sandbox
    dead = f"http://127.0.0.1:{free_port()}"  # a download would fail
    result = user.run(
        *box.install_args("--no-demo", "--no-start")[1:],
        env=user.env(dead),
        script=Path("install.sh"),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Using {INSTALLER} (beside install.sh)" in result.stdout
    assert "Downloading" not in result.stdout
    assert box.state()["ui_port"] == box.ui_port
    copy = box.home / "dk_installer.py"
    assert copy.read_bytes() == INSTALLER_BYTES
    assert f"{copy} status" in result.stdout
    assert list(user.tmpdir.iterdir()) == []


def test_from_clone_when_home_is_not_writable_runs_the_clone_file(user: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = user.env(f"http://127.0.0.1:{free_port()}", DK_INSTALLER_HOME=str(blocker / "home"))
    result = user.run("--no-browser", env=env, script=INSTALL_SH)
    assert "Could not save dk_installer.py" in result.stderr
    [start] = user.installer_starts()
    assert start["args"][0] == str(INSTALLER)
    assert result.returncode == 3, result.stdout + result.stderr  # the installer's requirement failure


# --- Beside install.sh: only a file nobody else could have changed (issue 15, item 2) --------------

# A local copy that differs from the published file (and still runs): which of the two ran shows in
# the installer home's copy.
LOCAL_BYTES = INSTALLER_BYTES + b"\n# a local copy, not the published file\n"


def place_clone(
    folder: Path, content: bytes = LOCAL_BYTES, checksum: str | None = "match", mode: int = 0o644
) -> Path:
    """install.sh with a dk_installer.py (mode `mode`) beside it, and its checksum file: `match`,
    `wrong` or None (none)."""
    folder.mkdir(exist_ok=True)
    shutil.copy(INSTALL_SH, folder / "install.sh")
    (folder / "dk_installer.py").write_bytes(content)
    (folder / "dk_installer.py").chmod(mode)
    if checksum is not None:
        digest = hashlib.sha256(content if checksum == "match" else b"something else").hexdigest()
        (folder / "dk_installer.py.sha256").write_text(f"{digest}  dk_installer.py\n")
    return folder / "install.sh"


def untrusted_clone(case: str, tmp_path: Path, shared: Path, other: pwd.struct_passwd) -> Path:
    """install.sh beside a dk_installer.py that must not be used; returns the script."""
    clone = tmp_path / "clone"
    if case == "owned-by-another-user":
        # The shared-machine attack, for real: the other user drops a file and its matching checksum
        # beside the install.sh you saved in a shared folder.
        script = shared / "install.sh"
        shutil.copy(INSTALL_SH, script)
        write_as(other, shared / "dk_installer.py", LOCAL_BYTES)
        write_as(
            other, shared / "dk_installer.py.sha256", f"{hashlib.sha256(LOCAL_BYTES).hexdigest()}\n".encode()
        )
        return script
    if case == "group-writable":
        return place_clone(clone, mode=0o664)
    if case == "world-writable":
        return place_clone(clone, mode=0o646)
    if case == "folder-writable":
        script = place_clone(clone)
        clone.chmod(0o777)  # anyone may rename another file over it
        return script
    if case == "folder-of-another-user":
        script = place_clone(clone)
        os.chown(clone, other.pw_uid, other.pw_gid)
        return script
    if case == "parent-folder-writable":
        parent = tmp_path / "open"
        parent.mkdir()
        parent.chmod(0o777)  # anyone may move `clone` away and put another in its place
        return place_clone(parent / "clone")
    if case == "symlink":
        script = place_clone(clone)
        (tmp_path / "elsewhere.py").write_bytes(LOCAL_BYTES)
        (clone / "dk_installer.py").unlink()
        (clone / "dk_installer.py").symlink_to(tmp_path / "elsewhere.py")
        return script
    if case == "wrong-checksum":
        return place_clone(clone, checksum="wrong")
    assert case == "no-checksum"
    return place_clone(clone, checksum=None)


UNTRUSTED = {
    "owned-by-another-user": "belongs to another user",
    "group-writable": "other users can write to it (mode -rw-rw-r--)",
    "world-writable": "other users can write to it (mode -rw-r--rw-)",
    "folder-writable": "other users can write to its folder",
    "folder-of-another-user": "its folder",
    "parent-folder-writable": "/open (mode drwxrwxrwx)",
    "symlink": "symbolic link",
    "wrong-checksum": "does not match dk_installer.py.sha256",
    "no-checksum": "no dk_installer.py.sha256",
}


@pytest.mark.parametrize("case", list(UNTRUSTED))
def test_untrusted_file_beside_install_sh_is_ignored(
    user: Run,
    server: HTTPServer,
    tmp_path: Path,
    other_user: pwd.struct_passwd,
    shared_folder: Path,
    case: str,
) -> None:
    script = untrusted_clone(case, tmp_path, shared_folder, other_user)
    result = user.run("--help", env=user.env(serve(server)), script=script)
    assert result.returncode == 0, result.stdout + result.stderr
    # The published installer was downloaded, and it is what ran.
    assert (user.sandbox.home / "dk_installer.py").read_bytes() == INSTALLER_BYTES
    assert requested(server) == ["/dk_installer.py", "/dk_installer.py.sha256"]
    [start] = user.installer_starts()
    assert start["args"][0] == str(user.sandbox.home / "dk_installer.py")
    # Said once, on stderr, with the reason.
    [warning] = [line for line in result.stderr.splitlines() if "beside install.sh" in line]
    assert f"Not using {script.parent}/dk_installer.py beside install.sh" in warning
    assert UNTRUSTED[case] in warning and "downloading it instead" in warning
    assert "beside install.sh" not in result.stdout


@pytest.mark.parametrize("where", ["own-folder", "sticky-shared-folder"])
def test_trusted_file_beside_install_sh_is_used(
    user: Run, server: HTTPServer, tmp_path: Path, shared_folder: Path, where: str
) -> None:
    """Yours, writable by you alone, in folders only you (or root) can change, and matching its
    checksum: used, nothing downloaded. A sticky folder such as /tmp is fine: nobody else can
    replace a file of yours there."""
    script = place_clone(tmp_path / "clone" if where == "own-folder" else shared_folder)
    result = user.run("--help", env=user.env(serve(server)), script=script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Using {script.parent}/dk_installer.py (beside install.sh): its checksum matches" in result.stdout
    assert "Not using" not in result.stderr
    assert requested(server) == []
    assert (user.sandbox.home / "dk_installer.py").read_bytes() == LOCAL_BYTES


@pytest.mark.parametrize("mode", [0o644, 0o664], ids=["trusted", "group-writable"])
def test_file_checks_with_busybox_tools(user: Run, server: HTTPServer, tmp_path: Path, mode: int) -> None:
    """Alpine-like: `ls` and `id` are BusyBox applets."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS.split():
        (bin_dir / tool).symlink_to(need("busybox"))
    (bin_dir / "curl").symlink_to(need("curl"))
    script = place_clone(tmp_path / "clone", mode=mode)
    result = user.run("--help", env=user.env(serve(server), PATH=str(bin_dir)), script=script)
    assert result.returncode == 0, result.stdout + result.stderr
    used = mode == 0o644
    assert ("its checksum matches" in result.stdout) is used
    assert ("other users can write to it" in result.stderr) is not used
    assert (user.sandbox.home / "dk_installer.py").read_bytes() == (LOCAL_BYTES if used else INSTALLER_BYTES)


# --- Python -----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["PATH", "DK_PYTHON"])
def test_python_too_old(user: Run, tmp_path: Path, via: str) -> None:
    bin_dir = make_bin(tmp_path / "bin", "curl")
    old = write_fake_python(bin_dir / "python3", "3.8.10")
    write_broken_shim(bin_dir / "python3.12")
    env = user.env(DK_PYTHON=str(old) if via == "DK_PYTHON" else None, PATH=str(bin_dir))
    result = user.run("--no-browser", env=env)
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert "needs Python 3.9 or newer" in first and "3.8.10" in first
    assert "Install" in result.stderr and "DK_PYTHON" in result.stderr
    assert "pyenv" not in result.stderr
    assert not user.sandbox.home.exists()


def test_no_python(user: Run, tmp_path: Path) -> None:
    bin_dir = make_bin(tmp_path / "bin", "curl")
    for name in ("python3.13", "python3.12", "python3.10", "python3.9"):
        write_broken_shim(bin_dir / name)  # exist on PATH, fail when run
    result = user.run("--no-browser", env=user.env(DK_PYTHON=None, PATH=str(bin_dir)))
    assert result.returncode != 0
    assert "needs Python 3.9 or newer, and none was found" in result.stderr.splitlines()[0]
    assert "Install" in result.stderr
    assert not user.sandbox.home.exists()


def test_broken_dk_python_is_named(user: Run, tmp_path: Path) -> None:
    shim = write_broken_shim(tmp_path / "python3.12")
    result = user.run("--no-browser", env=user.env(DK_PYTHON=str(shim)))
    assert result.returncode != 0
    assert f"DK_PYTHON={shim} does not run" in result.stderr


def test_failing_candidates_are_skipped(user: Run, tmp_path: Path) -> None:
    bin_dir = make_bin(tmp_path / "bin")
    write_broken_shim(bin_dir / "python3.13")
    write_python_wrapper(bin_dir / "python3.12", user.python_log)
    write_fake_python(bin_dir / "python3", "3.8.10")
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("install.sh", "dk_installer.py", "dk_installer.py.sha256"):
        shutil.copy(ROOT / name, clone / name)
    result = user.run("--help", env=user.env(DK_PYTHON=None, PATH=str(bin_dir)), script=clone / "install.sh")
    assert result.returncode == 0, result.stderr
    assert "(python3.12)" in result.stdout
    assert "python3.12" in result.stdout.split("Manage TestGen with:")[1]
    assert len(user.installer_starts()) == 1


def test_venv_missing_names_the_apt_package(shell: list[str], tmp_path: Path) -> None:
    python = write_fake_python(tmp_path / "python3.11", "3.11.4", venv_works=False)
    snippet = (
        f'os_family() {{ echo apt; }}; PYTHON="{python}"; PYTHON_PATH="{python}"; PYTHON_VERSION=3.11.4\n'
        f'PRIVATE_DIR="{tmp_path}"\n'
        f'check_venv "{tmp_path / "home"}"; echo "status=$?"'
    )
    result = call(shell, tmp_path, snippet)
    assert "status=1" in result.stdout
    assert "venv module is not usable" in result.stderr
    assert "sudo apt-get install python3-venv" in result.stderr
    assert "sudo apt-get install python3.11-venv" in result.stderr
    # With the installer's runtime already built, venv is not needed any more.
    (tmp_path / "home/runtime/bin").mkdir(parents=True)
    os.symlink(python, tmp_path / "home/runtime/bin/python")
    assert "status=0" in call(shell, tmp_path, snippet).stdout


def test_venv_missing_stops_before_downloading(user: Run, server: HTTPServer, tmp_path: Path) -> None:
    python = write_fake_python(tmp_path / "python3.11", "3.11.4", venv_works=False)
    result = user.run("--no-browser", env=user.env(serve(server), DK_PYTHON=str(python)))
    assert result.returncode != 0
    assert "venv module is not usable" in result.stderr
    assert requested(server) == []
    user.assert_nothing_installed()


@pytest.mark.parametrize(
    ("os_release", "family"),
    [
        ('ID=debian\nVERSION_ID="12"\n', "apt"),
        ("ID=ubuntu\nID_LIKE=debian\n", "apt"),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "dnf"),
        ("ID=fedora\n", "dnf"),
        ("ID=alpine\n", "apk"),
        ("ID=gentoo\n", "unknown"),
    ],
)
def test_os_family(shell: list[str], tmp_path: Path, os_release: str, family: str) -> None:
    (tmp_path / "os-release").write_text(os_release)
    result = call(shell, tmp_path, f'os_family "{tmp_path / "os-release"}"')
    assert result.stdout.strip() == family


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("apt", "sudo apt-get install python3 python3-venv"),
        ("dnf", "sudo dnf install python3"),
        ("brew", "brew install python@3.12"),
        ("unknown", "https://www.python.org/downloads/"),
    ],
)
def test_python_install_hint_per_os_family(
    shell: list[str], tmp_path: Path, family: str, expected: str
) -> None:
    result = call(shell, tmp_path, f"os_family() {{ echo {family}; }}; python_install_hint")
    assert expected in result.stderr


# --- Downloads: tools, URLs, TLS --------------------------------------------------------------


@pytest.mark.parametrize("wget", [None, "busybox"], ids=["no-wget", "busybox-wget"])
def test_no_downloader(user: Run, server: HTTPServer, tmp_path: Path, wget: str | None) -> None:
    bin_dir = make_bin(tmp_path / "bin")
    if wget:
        (bin_dir / "wget").symlink_to(need(wget))  # BusyBox's wget cannot require TLS 1.2
    result = user.run("--no-browser", env=user.env(serve(server), PATH=str(bin_dir)))
    assert result.returncode != 0
    assert "Neither curl nor GNU wget was found" in result.stderr
    assert "install curl" in result.stderr.lower()
    assert requested(server) == []
    user.assert_nothing_installed()


def test_busybox_userland(user: Run, server: HTTPServer, tmp_path: Path) -> None:
    """Alpine-like: every tool but curl is a BusyBox applet."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS.split():
        (bin_dir / tool).symlink_to(need("busybox"))
    (bin_dir / "curl").symlink_to(need("curl"))
    result = user.run("--help", env=user.env(serve(server), PATH=str(bin_dir)))
    assert result.returncode == 0, result.stderr
    assert "Checksum verified" in result.stdout
    assert (user.sandbox.home / "dk_installer.py").read_bytes() == INSTALLER_BYTES
    assert list(user.tmpdir.iterdir()) == []


def test_gnu_wget_is_used_without_curl(user: Run, server: HTTPServer, tmp_path: Path) -> None:
    bin_dir = make_bin(tmp_path / "bin", "wget")
    result = user.run("--help", env=user.env(serve(server), PATH=str(bin_dir)))
    assert result.returncode == 0, result.stderr
    assert requested(server) == ["/dk_installer.py", "/dk_installer.py.sha256"]
    assert (user.sandbox.home / "dk_installer.py").read_bytes() == INSTALLER_BYTES


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/dk",
        "http://127.0.0.1.example.com/dk",
        "http://localhost:80@example.com/dk",
        "http://localhost:8000#@example.com/",
        "ftp://127.0.0.1/dk",
        "file:///tmp/dk",
        "127.0.0.1:8000",
    ],
)
def test_non_https_base_url_refused(user: Run, tmp_path: Path, url: str) -> None:
    bin_dir = make_bin(tmp_path / "bin")
    curl_log = tmp_path / "curl-args"
    (bin_dir / "curl").write_text(f'#!/bin/sh\necho "$@" >> "{curl_log}"\nexit 7\n')
    (bin_dir / "curl").chmod(0o755)
    result = user.run("--no-browser", env=user.env(url, PATH=str(bin_dir)))
    assert result.returncode != 0
    assert f"Refusing to download from {url.rstrip('/')}" in result.stderr
    assert not curl_log.exists()
    user.assert_nothing_installed()


def test_url_check_accepts_https_and_local_http(shell: list[str], tmp_path: Path) -> None:
    urls = [
        "https://raw.githubusercontent.com/DataKitchen/dk-installer/main",
        "http://127.0.0.1:8000/x",
        "http://localhost/x",
        "http://localhost:1234",
        "http://[::1]:8000/x",
    ]
    snippet = "".join(f'check_url "{url}" && echo "ok {url}"\n' for url in urls)
    result = call(shell, tmp_path, snippet)
    assert result.stdout.splitlines() == [f"ok {url}" for url in urls], result.stderr


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_download_flags_enforce_https_tls_timeouts_and_retries(user: Run, tmp_path: Path, tool: str) -> None:
    bin_dir = make_bin(tmp_path / "bin")
    args_log = tmp_path / "args"
    (bin_dir / tool).write_text(
        "#!/bin/sh\n"
        'case "$1" in --version) echo "GNU Wget 1.21.3 built on linux-gnu."; exit 0 ;; esac\n'
        f'for a in "$@"; do echo "$a"; done >> "{args_log}"\nexit 4\n'
    )
    (bin_dir / tool).chmod(0o755)
    result = user.run("--no-browser", env=user.env("https://127.0.0.1:1/dk", PATH=str(bin_dir)))
    assert result.returncode != 0
    assert f"Could not download https://127.0.0.1:1/dk/dk_installer.py ({tool} failed)" in result.stderr
    args = args_log.read_text().splitlines()
    assert args[-1] == "https://127.0.0.1:1/dk/dk_installer.py"
    if tool == "curl":
        for flag, value in (
            ("--proto", "=https"),
            ("--proto-redir", "=https"),
            ("--connect-timeout", "15"),
            ("--max-time", "300"),
            ("--retry", "3"),
        ):
            assert args[args.index(flag) + 1] == value
        assert "--tlsv1.2" in args and "--fail" in args
    else:
        for flag in (
            "--secure-protocol=TLSv1_2",
            "--max-redirect=0",
            "--connect-timeout=15",
            "--tries=4",
            "--https-only",
        ):
            assert flag in args
    user.assert_nothing_installed()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[HTTPServer, dict[str, str]]]:
    """An HTTPS server with a test CA, and the environment that makes curl and wget trust it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    wgetrc = tmp_path / "wgetrc"
    wgetrc.write_text(f"ca_certificate = {bundle}\n")
    srv = start_server(context)
    yield srv, {"CURL_CA_BUNDLE": str(bundle), "WGETRC": str(wgetrc)}
    srv.clear()
    srv.stop()


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_https_download(
    user: Run, tls_server: tuple[HTTPServer, dict[str, str]], tmp_path: Path, tool: str
) -> None:
    srv, trust = tls_server
    base = serve(srv)
    assert base.startswith("https://")
    env = user.env(
        base,
        PATH=str(make_bin(tmp_path / "bin", tool)),
        **trust,
    )
    result = user.run("--help", env=env)
    assert result.returncode == 0, result.stderr
    assert requested(srv) == ["/dk_installer.py", "/dk_installer.py.sha256"]


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_https_to_http_redirect_refused(
    user: Run, tls_server: tuple[HTTPServer, dict[str, str]], server: HTTPServer, tmp_path: Path, tool: str
) -> None:
    srv, trust = tls_server
    plain = serve(server)
    for name in ("dk_installer.py", "dk_installer.py.sha256"):
        srv.expect_request(f"/{name}").respond_with_data(
            "", status=302, headers={"Location": f"{plain}/{name}"}
        )
    env = user.env(
        srv.url_for("/"),
        PATH=str(make_bin(tmp_path / "bin", tool)),
        **trust,
    )
    result = user.run("--no-browser", env=env)
    assert result.returncode != 0
    assert requested(srv) == ["/dk_installer.py"]
    assert requested(server) == []  # never followed to plain http
    user.assert_nothing_installed()


@pytest.mark.parametrize("tools", [("shasum",), ("openssl",), ()], ids=["shasum", "openssl", "none"])
def test_hashing_tool_fallbacks(shell: list[str], tmp_path: Path, tools: tuple[str, ...]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "tr", "cat", "perl", *tools):  # shasum is a perl script
        (bin_dir / tool).symlink_to(need(tool))
    (tmp_path / "dk_installer.py").write_bytes(INSTALLER_BYTES)
    (tmp_path / "good").write_text(f"{INSTALLER_SHA256}  dk_installer.py\n")
    (tmp_path / "bad").write_text(f"{'0' * 64}  dk_installer.py\n")
    snippet = (
        "verify_checksum dk_installer.py good; echo good=$?\nverify_checksum dk_installer.py bad; echo bad=$?"
    )
    result = call(shell, tmp_path, snippet, env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    if tools:
        assert result.stdout.split() == ["good=0", "bad=1"], result.stderr
        assert "Checksum mismatch" in result.stderr
    else:
        assert result.stdout.split() == ["good=1", "bad=1"]
        assert "No SHA-256 tool" in result.stderr


# --- Colour ---------------------------------------------------------------------------------------


def run_on_terminal(argv: list[str], env: dict[str, str], stdin: bool = False) -> tuple[int, str]:
    """Run with stdout and stderr (and stdin if asked) on a pseudo-terminal; returns the exit code and
    what it printed."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            argv, env=env, stdin=terminal if stdin else subprocess.DEVNULL, stdout=terminal, stderr=terminal
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(controller)


@pytest.mark.parametrize(
    ("terminal", "no_color", "coloured"),
    [(True, None, True), (True, "1", False), (True, "", False), (False, None, False)],
)
def test_colour_only_on_a_terminal_without_no_color(
    user: Run, tmp_path: Path, terminal: bool, no_color: str | None, coloured: bool
) -> None:
    old = write_fake_python(tmp_path / "python3", "3.8.10")
    env = user.env(DK_PYTHON=str(old), NO_COLOR=no_color)
    argv = [*user.shell, str(user.script)]
    if terminal:
        code, output = run_on_terminal(argv, env)
    else:
        result = user.run(env=env)
        code, output = result.returncode, result.stdout + result.stderr
    assert code != 0
    assert "needs Python 3.9 or newer" in output
    assert ("\x1b[" in output) is coloured


def test_published_checksum_matches_the_installer() -> None:
    """install.sh downloads dk_installer.py.sha256 from the repository beside dk_installer.py."""
    published = (ROOT / "dk_installer.py.sha256").read_text().split()
    assert published[1] == "dk_installer.py"
    assert published[0] == hashlib.sha256((ROOT / "dk_installer.py").read_bytes()).hexdigest(), (
        "dk_installer.py changed: run `sha256sum dk_installer.py > dk_installer.py.sha256`"
    )
