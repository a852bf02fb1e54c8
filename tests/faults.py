"""Misbehaving collectors on 127.0.0.1 for the analytics tests: each accepts connections and then
fails in one particular way. They run in daemon threads and count the connections they get."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class FaultServer:
    """A TCP server whose `behave(connection)` decides what the client experiences."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError), connection:
            self.behave(connection)

    def behave(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def hold(self, seconds: float = 30) -> None:
        self.closing.wait(seconds)

    def close(self) -> None:
        self.closing.set()
        self.listener.close()


class AcceptAndHang(FaultServer):
    """Accepts, reads the request, never answers."""

    def behave(self, connection: socket.socket) -> None:
        connection.recv(65536)
        self.hold()


class SlowDrip(FaultServer):
    """Answers one header byte per second, forever."""

    def behave(self, connection: socket.socket) -> None:
        connection.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 120:
            if self.closing.is_set():
                return
            connection.sendall(bytes([byte]))
            time.sleep(1)


class TlsNeverCompletes(FaultServer):
    """Accepts a TLS client and never sends the ServerHello."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def behave(self, connection: socket.socket) -> None:
        connection.recv(65536)
        self.hold()


def refused_url() -> str:
    """A loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serving(server: FaultServer) -> Iterator[FaultServer]:
    try:
        yield server
    finally:
        server.close()


def dns_hang_site(directory: Path) -> Path:
    """A sitecustomize that makes name resolution hang inside any Python process that starts with
    it on PYTHONPATH and DNS_HANG=1: the detached sender's DNS, patched from the outside."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import os, socket, time\n"
        "if os.environ.get('DNS_HANG') == '1':\n"
        "    def _hang(*args, **kwargs):\n"
        "        time.sleep(60)\n"
        "        raise socket.gaierror('never')\n"
        "    socket.getaddrinfo = _hang\n"
    )
    return directory
