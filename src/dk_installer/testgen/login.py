"""The installer's OAuth client for TestGen's API: a real login, the way an MCP assistant or an
API client logs in (dynamic client registration, then the authorization form with PKCE)."""

from __future__ import annotations

from typing import Any

from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.tls import tls_adapter


def oauth_login(base: str, tls_context: Any, username: str, password: str) -> bool | None:
    """A real login through TestGen's OAuth flow: register a public client, then POST the
    credentials to /oauth/authorize with a PKCE challenge. True on a redirect carrying a code,
    False on 401, None when this TestGen has no OAuth endpoints."""
    import base64
    import hashlib
    import secrets
    import urllib.parse

    import requests

    redirect_uri = "http://localhost:8765/dk-installer/callback"
    session = requests.Session()
    session.trust_env = False  # a local address: never through a proxy
    if tls_context is not None:
        session.mount("https://", tls_adapter(tls_context))
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
