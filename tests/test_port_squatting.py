"""Port squatting (issue 15, item 3): another local user binds TestGen's ports between the
installer's port check and TestGen's start, answers the health and OAuth probes like TestGen and
waits for the admin password. The installer must notice that the sockets are not TestGen's, name
who holds them, send no password and never say "ready"."""

from __future__ import annotations

import contextlib
import json
import pwd
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, Sandbox, free_port, wait_for_line

from dk_installer.net import receiving_listeners

# A stranger's server: 200 on both health URLs, OAuth answered as TestGen answers a good login, and
# every request body written down (what it would have stolen); or, "silent", sockets that accept
# and never answer. Prints its pid once it listens.
SQUATTER = """
import json, os, socket, sys, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ui_port, api_port, loot, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

class Squatter(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body="", headers=()):
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self):
        healthy = self.path in ("/_stcore/health", "/api/v1/health")
        self.reply(200 if healthy else 404, "ok" if healthy else "Not Found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        with open(loot, "a") as handle:
            handle.write(json.dumps({"path": self.path, "body": body}) + "\\n")
        if self.path == "/oauth/register":
            self.reply(201, json.dumps({"client_id": "squatter", **json.loads(body)}))
        elif self.path == "/oauth/authorize":
            form = dict(urllib.parse.parse_qsl(body))
            query = urllib.parse.urlencode({"code": "stolen", "state": form.get("state", "")})
            self.reply(302, headers=[("Location", form["redirect_uri"] + "?" + query)])
        else:
            self.reply(404, "Not Found")

if mode == "silent":
    held = [socket.create_server(("127.0.0.1", port)) for port in (ui_port, api_port)]
else:
    servers = [ThreadingHTTPServer(("127.0.0.1", port), Squatter) for port in (ui_port, api_port)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"listening {os.getpid()}", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def as_user(user: pwd.struct_passwd) -> list[str]:
    """The system Python run as `user` (this test's venv lives under root's 0700 home)."""
    return ["runuser", "-u", user.pw_name, "--", "/usr/bin/python3"]


@contextlib.contextmanager
def squatter(
    user: pwd.struct_passwd, folder: Path, sandbox: Sandbox, mode: str = "answers"
) -> Iterator[tuple[int, Path]]:
    """The squatter, run as `user` on the sandbox's ports; yields its pid and the file of what it
    received. Stopped (the whole runuser tree) on the way out."""
    script = folder / "squatter.py"
    script.write_text(SQUATTER)
    loot = folder / "loot.jsonl"
    process = subprocess.Popen(
        [*as_user(user), str(script), str(sandbox.ui_port), str(sandbox.api_port), str(loot), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=folder,
    )
    tree = [psutil.Process(process.pid)]
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening "), line
        pid = int(line.split()[1])
        tree += psutil.Process(process.pid).children(recursive=True)
        assert psutil.Process(pid).username() == user.pw_name
        yield pid, loot
    finally:
        for member in tree:
            with contextlib.suppress(psutil.Error):
                member.kill()
        psutil.wait_procs(tree, timeout=10)
        process.communicate()


def event_of(stderr: str) -> dict:
    return json.loads(stderr.split("analytics debug (not sent): ")[1].splitlines()[0])["properties"]


DEBUG = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}


@pytest.mark.parametrize("mode", ["answers", "silent"])
def test_install_sends_no_password_to_a_squatter_and_names_it(
    sandbox: Sandbox, other_user: pwd.struct_passwd, shared_folder: Path, mode: str
) -> None:
    """ "answers": the squatter passes for TestGen; "silent": TestGen cannot bind and exits, and the
    error names who holds the port rather than only "TestGen exited"."""
    env = {**DEBUG, "DK_INSTALLER_FAILPOINT": "start"}
    installer = sandbox.popen(*sandbox.install_args("--no-demo"), env=env)
    try:
        wait_for_line(installer, "failpoint start")
        password = sandbox.password()  # Configure has run: this is what the squatter is after
        with squatter(other_user, shared_folder, sandbox, mode) as (pid, loot):
            installer.send_signal(signal.SIGUSR1)
            out, err = installer.communicate(timeout=180)
            received = loot.read_text() if loot.exists() else ""
    finally:
        if installer.poll() is None:
            installer.kill()
            installer.communicate()
    assert installer.returncode == 3, out + err
    assert f"pid {pid} ({other_user.pw_name})" in err, out + err
    assert "not by this TestGen" in err
    assert "ready" not in out + err
    props = event_of(err)
    assert (props["failed_step"], props["error_code"]) == ("start", "port_in_use")
    assert password not in received and "password=" not in received, received
    assert sandbox.processes() == []  # TestGen and its PostgreSQL were stopped, the install undone
    assert not (sandbox.home / "state.json").exists()


def test_start_refuses_a_squatter_that_came_after_the_port_check(
    sandbox: Sandbox, other_user: pwd.struct_passwd, shared_folder: Path
) -> None:
    assert sandbox.install("--no-demo", "--no-start").returncode == 0
    starter = sandbox.popen("start", env={**DEBUG, "DK_INSTALLER_FAILPOINT": "start"})
    try:
        wait_for_line(starter, "failpoint start")
        with squatter(other_user, shared_folder, sandbox) as (pid, _):
            starter.send_signal(signal.SIGUSR1)
            out, err = starter.communicate(timeout=180)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.communicate()
    assert starter.returncode == 3, out + err
    assert f"pid {pid} ({other_user.pw_name})" in err, out + err
    assert "is running" not in out
    assert event_of(err)["error_code"] == "port_in_use"
    assert sandbox.processes() == []
    assert not sandbox.status()["running"]


# Which socket receives the installer's connection: a real server per address, each answering with
# its own pid, so that the kernel's choice is seen, not assumed.
ANSWER_PID = """
import os, socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind((sys.argv[1], int(sys.argv[2])))
sock.listen()
print("listening", flush=True)
while True:
    connection, _ = sock.accept()
    connection.sendall(str(os.getpid()).encode())
    connection.close()
"""


def test_the_socket_checked_is_the_one_that_receives_the_connection() -> None:
    """A process bound to 127.0.0.1 itself takes the connections to it from one bound to every
    address (both here as this user, with SO_REUSEPORT: Linux refuses the pair to two users)."""
    port = free_port()
    servers = []
    try:
        for address in ("0.0.0.0", "127.0.0.1"):
            server = subprocess.Popen(
                [sys.executable, "-c", ANSWER_PID, address, str(port)], stdout=subprocess.PIPE, text=True
            )
            servers.append(server)
            assert server.stdout is not None and server.stdout.readline() == "listening\n"
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                receiver = int(connection.recv(32))
            assert receiver == server.pid  # the newest, more specific one takes it
            assert receiving_listeners("127.0.0.1", port, ()) == [server.pid]
    finally:
        for server in servers:
            server.kill()
            server.communicate()


def test_an_owner_this_user_cannot_see_is_not_ours(other_user: pwd.struct_passwd) -> None:
    """For a user who is not root, another user's socket has no pid: never taken for TestGen's."""
    port = free_port()
    # The package and psutil from here, which the other user may read.
    site = next((ROOT / ".venv-test" / "lib").glob("python3*/site-packages"))
    probe = (
        "import sys; from pathlib import Path; sys.path[:0] = sys.argv[1:3];"
        "from dk_installer.paths import Paths;"
        "from dk_installer.testgen.processes import strangers_listening;"
        "nowhere = Path('/nonexistent');"
        "print(strangers_listening(Paths(nowhere, nowhere), '127.0.0.1', int(sys.argv[3])))"
    )
    with socket.socket() as held:  # root's socket, which the other user may not attribute
        held.bind(("127.0.0.1", port))
        held.listen()
        seen = subprocess.run(
            [*as_user(other_user), "-I", "-c", probe, str(ROOT / "src"), str(site), str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip() == "[None]"
