"""Ports and addresses: whether a port is free, which names other machines use to reach this one,
whether an address belongs to this machine, and a plain HTTP probe."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from dk_installer.defaults import ALL_ADDRESSES

HTTP_PROBE_TIMEOUT_S = 2.0


def http_status(url: str, context: Any = None, timeout: float = HTTP_PROBE_TIMEOUT_S) -> int | None:
    """The HTTP status of a GET, or None when nothing answers. Stdlib only: this runs in `status`.
    Never through a proxy: the probes go to TestGen on this machine, which a proxy (HTTP_PROXY set
    without NO_PROXY) cannot reach or would answer for."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=timeout) as response:
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


def process_description(pid: int | None) -> str:
    """A listening socket's owner as people recognise it: "pid 4242 (alice): python3 -m
    http.server 8501" (the command when readable); a pid this user may not see is None."""
    import psutil

    if pid is None:
        return "a process this user cannot see (another user's)"
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            user = process.username()
            command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({user}): {command[:100]}"


def port_holder(port: int) -> str | None:
    """Who listens on `port`, on any address, as far as this user may see (process_description);
    None when no listening socket is found."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            return process_description(connection.pid)
    return None


WILDCARDS = ("0.0.0.0", "::")


def receiving_listeners(host: str, port: int, own_pids: Collection[int]) -> list[int | None]:
    """The owners (pids) of the listening sockets that a TCP connection to host:port reaches;
    None for an owner this user may not see (another user's socket, for a non-root user). Empty
    when nothing listens there.

    As the kernel chooses: a socket bound to the address itself (or its IPv4-mapped IPv6 form)
    takes the connection before a wildcard one; failing that, the wildcards (0.0.0.0, and :: which
    may take IPv4 too) do. Sockets that share one address (SO_REUSEPORT) share its connections, so
    every one of the chosen tier is listed. `own_pids` are looked at one by one where the system
    lists sockets for root only (macOS): there a user sees only his own, and macOS refuses another
    user's bind of an address one of them holds."""
    import ipaddress

    import psutil

    try:
        sockets = [
            (c.laddr.ip, c.pid)
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        ]
    except psutil.AccessDenied:
        sockets = []
        for pid in own_pids:
            with contextlib.suppress(psutil.Error):
                sockets += [
                    (c.laddr.ip, pid)
                    for c in psutil.Process(pid).net_connections(kind="tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                ]
    address = ipaddress.ip_address(host)
    exact = {str(address)} | ({f"::ffff:{address}"} if address.version == 4 else set())
    specific = [pid for ip, pid in sockets if ip in exact]
    if specific:
        return specific
    wildcards = WILDCARDS if address.version == 4 else ("::",)
    return [pid for ip, pid in sockets if ip in wildcards]
