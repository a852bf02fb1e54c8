"""The HTTPS certificate TestGen serves: whether a certificate and key are a usable pair, when the
certificate expires, and which host names and addresses it covers. Standard library only: the
installer's runtime has no `cryptography`, and `openssl` is not on every machine."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

# From this many days before its end, status and doctor warn that the certificate expires.
EXPIRY_WARNING_DAYS = 14

# Why sharing needs HTTPS, shown where a shared plain-HTTP setup is refused or warned about.
SHARING_NEEDS_HTTPS = (
    "TestGen's OAuth server (authlib) refuses plain HTTP except for localhost and 127.0.0.1, so API "
    "clients and MCP assistants on other machines could not log in"
)
HOW_TO_GET_HTTPS = (
    "give it a certificate with --ssl-cert-file and --ssl-key-file (for example one from your "
    "team's CA, or from Let's Encrypt with certbot)"
)


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The facts of a PEM certificate (the first one of a chain file: the server's own)."""

    not_after: datetime.datetime
    dns_names: tuple[str, ...]
    addresses: tuple[str, ...]

    def days_left(self, now: datetime.datetime | None = None) -> int:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return (self.not_after - now).days

    @property
    def names(self) -> tuple[str, ...]:
        return self.dns_names + self.addresses

    def covers(self, host: str) -> bool:
        """Would a client that checks names accept this certificate for `host`? (RFC 6125: the
        subjectAltName alone; a wildcard stands for exactly one leftmost label.)"""
        import ipaddress

        try:
            wanted = ipaddress.ip_address(host)
        except ValueError:
            host = host.lower().rstrip(".")
            for name in self.dns_names:
                name = name.lower().rstrip(".")
                if name == host:
                    return True
                if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
                    return True
            return False
        return any(ipaddress.ip_address(address) == wanted for address in self.addresses)


def read_certificate(path: Path) -> Certificate | None:
    """The certificate in `path`, or None when it cannot be read as one.

    `ssl._ssl._test_decode_cert` is CPython's own decoder (what `SSLSocket.getpeercert()` returns,
    for a file): private by name, but present and unchanged in every Python 3 the installer runs
    on. It is wrapped here, in one place, so that a change would be met in one function."""
    import ssl

    try:
        decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
        not_after = datetime.datetime.fromtimestamp(
            ssl.cert_time_to_seconds(decoded["notAfter"]), datetime.timezone.utc
        )
    except (OSError, ValueError, KeyError, ssl.SSLError):
        return None
    alt_names = decoded.get("subjectAltName", ())
    return Certificate(
        not_after=not_after,
        dns_names=tuple(value for kind, value in alt_names if kind == "DNS"),
        addresses=tuple(value.strip() for kind, value in alt_names if kind == "IP Address"),
    )


def pair_problem(cert: Path, key: Path) -> str | None:
    """Why `cert` and `key` cannot serve HTTPS (TestGen would fail at start-up), or None."""
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key), password=lambda: b"")
    except ssl.SSLError:
        return f"{cert} and {key} are not a matching certificate and unencrypted private key (PEM)"
    facts = read_certificate(cert)
    if facts is None:
        return f"{cert} is not a certificate this installer can read (PEM)"
    if facts.days_left() < 0:
        return f"the certificate in {cert} expired on {facts.not_after.date().isoformat()}"
    return None


def chain_is_complete(cert: Path, key: Path) -> bool:
    """Would a client accept this certificate's chain, trusting this machine's store plus any root
    CA certificate in the file (a self-signed certificate is its own root)? Found by a real TLS
    handshake over a socket pair, so OpenSSL decides, with no network. The installer's own probes
    pin the installed certificate, which passes either way: this is the clients' view."""
    import socket
    import ssl
    import threading

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(cert), str(key), password=lambda: b"")
    client = ssl.create_default_context()
    client.load_verify_locations(cafile=str(cert))
    client.check_hostname = False  # names are checked apart (Certificate.covers)
    near, far = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(far, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client.wrap_socket(near) as tls:
            tls.sendall(b"x")
        return True
    except ssl.SSLCertVerificationError:
        return False
    finally:
        near.close()
        thread.join(5)
        far.close()
