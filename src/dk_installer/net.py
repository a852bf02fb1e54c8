"""Ports and addresses: whether a port is free, which names other machines use to reach this one,
whether an address belongs to this machine, and a plain HTTP probe."""

from __future__ import annotations

import contextlib
from typing import Any

from dk_installer.defaults import ALL_ADDRESSES

HTTP_PROBE_TIMEOUT_S = 2.0


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


def port_holder(port: int) -> str | None:
    """Who listens on `port`, as far as this user may see: "pid 4242 (alice): python3 -m
    http.server 8501"; "a process this user cannot see" when the system hides it; None when no
    listening socket is found."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for connection in connections:
        if connection.status != psutil.CONN_LISTEN or not connection.laddr or connection.laddr.port != port:
            continue
        if connection.pid is None:
            return "a process this user cannot see (another user's)"
        try:
            process = psutil.Process(connection.pid)
            with process.oneshot():
                user = process.username()
                command = " ".join(process.cmdline()) or process.name()
        except psutil.Error:
            return f"pid {connection.pid}"
        return f"pid {connection.pid} ({user}): {command[:100]}"
    return None
