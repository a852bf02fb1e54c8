"""Whom the installer trusts over HTTPS: the CA a user names in the environment, else the system
trust store (where a TLS-inspecting proxy's CA lives); and TestGen's own certificate for the
probes the installer sends it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dk_installer.bootstrap import system_ca_file

if TYPE_CHECKING:
    from dk_installer.config import Settings


def https_verify(settings: Settings) -> bool | str:
    """What requests should verify HTTPS against. Without a CA variable in the environment, the
    system trust store (a TLS-inspecting proxy's CA lives there; requests alone knows only
    certifi's): truststore where the Python has it, else the system's OpenSSL bundle."""
    if settings.ca_from_environment:
        return True
    try:
        import truststore
    except ImportError:
        return system_ca_file() or True
    truststore.inject_into_ssl()
    return True


def system_trust_context() -> Any:
    """An SSLContext that verifies a server's chain and name against the system trust store:
    truststore's where the Python has it, else the system's OpenSSL bundle (certifi is not the
    system's)."""
    import ssl

    try:
        import truststore
    except ImportError:
        return ssl.create_default_context(cafile=system_ca_file())
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


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
