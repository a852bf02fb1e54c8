"""The installer's OAuth client for TestGen's API: a real login, the way an MCP assistant or an
API client logs in (dynamic client registration, then the authorization form with PKCE). Two
requests to TestGen on this machine, made with http.client: importing requests costs ~0.1 s of CPU,
which commands that need nothing else from it (configure, restore, an install from --find-links or a
bundle) no longer pay."""

from __future__ import annotations

from typing import Any

from dk_installer.errors import ErrorCode, InstallerError


def post(base: str, tls_context: Any, path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    """POST to TestGen (never through a proxy, never following a redirect): the status, the
    Location header and the body."""
    import http.client
    import urllib.parse

    address = urllib.parse.urlsplit(base)
    if address.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            address.hostname or "", address.port, timeout=15, context=tls_context
        )
    else:
        connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=15)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.getheader("Location", ""), response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise InstallerError(
            f"TestGen's API at {base} stopped answering during the login check: {exc}",
            code=ErrorCode.LOGIN_FAILED,
        ) from None
    finally:
        connection.close()


def oauth_login(base: str, tls_context: Any, username: str, password: str) -> bool | None:
    """A real login through TestGen's OAuth flow: register a public client, then POST the
    credentials to /oauth/authorize with a PKCE challenge. True on a redirect carrying a code,
    False on 401, None when this TestGen has no OAuth endpoints."""
    import base64
    import hashlib
    import json
    import secrets
    import urllib.parse

    redirect_uri = "http://localhost:8765/dk-installer/callback"
    registration = {
        "client_name": "dk-installer login check",
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "none",
    }
    status, _, body = post(
        base, tls_context, "/oauth/register", json.dumps(registration).encode(), "application/json"
    )
    if status in (404, 405):
        return None
    if status not in (200, 201):
        raise InstallerError(
            f"TestGen's /oauth/register answered HTTP {status}.", code=ErrorCode.LOGIN_FAILED
        )
    client_id = json.loads(body)["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state = secrets.token_urlsafe(8)
    form = urllib.parse.urlencode(
        {
            "username": username,
            "password": password,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    status, location, _ = post(
        base, tls_context, "/oauth/authorize", form.encode(), "application/x-www-form-urlencoded"
    )
    if status == 401:
        return False
    if status in (302, 303):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
        return bool(query.get("code")) and query.get("state") == [state]
    raise InstallerError(f"TestGen's /oauth/authorize answered HTTP {status}.", code=ErrorCode.LOGIN_FAILED)
