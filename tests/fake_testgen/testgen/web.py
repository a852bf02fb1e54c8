"""The stand-in's web app (`testgen run-app`): the UI's health URL and the API's health and OAuth
endpoints. Apart from __main__ because only run-app needs http.server and ssl."""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from testgen.__main__ import fault, jwt_key_is_base64, password_ok, read_config, record, setting


class Api(BaseHTTPRequestHandler):
    clients: ClassVar[dict[str, dict]] = {}

    def log_message(self, format: str, *args: object) -> None:
        print("api:", format % args, flush=True)

    def reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self) -> None:
        if self.path == "/api/v1/health":
            self.reply(200, json.dumps({"status": "ok", "edition": "TestGen", "version": None}))
        else:
            self.reply(404, "Not Found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length).decode()
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if os.environ.get("FAKE_TESTGEN_NO_OAUTH"):
            self.reply(404, "Not Found")
        elif not isinstance(self.connection, ssl.SSLSocket) and host not in ("localhost", "127.0.0.1"):
            # authlib's is_secure_transport: plain HTTP only for localhost and 127.0.0.1 (unless
            # AUTHLIB_INSECURE_TRANSPORT), else InsecureTransportError, which TestGen answers with 500.
            self.reply(
                500,
                json.dumps(
                    {"error": "insecure_transport", "error_description": "OAuth 2 MUST utilize https."}
                ),
            )
        elif self.path == "/oauth/register":
            client_id = secrets.token_hex(12)
            self.clients[client_id] = json.loads(raw)
            self.reply(201, json.dumps({"client_id": client_id, **self.clients[client_id]}))
        elif self.path == "/oauth/authorize" and not jwt_key_is_base64():
            # TestGen signs its tokens with base64.b64decode(TG_JWT_HASHING_KEY): anything else fails.
            self.reply(500, json.dumps({"error": "server_error", "error_description": "Incorrect padding"}))
        elif self.path == "/oauth/authorize":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
            client = self.clients.get(form.get("client_id", ""))
            if client is None:
                self.reply(400, json.dumps({"error": "invalid_client"}))
            elif not form.get("code_challenge"):
                self.reply(302, headers={"Location": f"{form['redirect_uri']}?error=invalid_request"})
            elif password_ok(form.get("username", ""), form.get("password", "")) and not os.environ.get(
                "FAKE_TESTGEN_REJECT_LOGIN"
            ):
                query = urllib.parse.urlencode(
                    {"code": secrets.token_urlsafe(36), "state": form.get("state", "")}
                )
                self.reply(302, headers={"Location": f"{form['redirect_uri']}?{query}"})
            else:
                self.reply(401, '<div class="error">Invalid username or password</div>')
        else:
            self.reply(404, "Not Found")


class Ui(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"ok" if self.path == "/_stcore/health" else b"<html>TestGen</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def run_app() -> int:
    fault("run-app")
    config = read_config()
    ui_port = int(os.environ.get("TG_UI_PORT") or config.get("TG_UI_PORT", 8501))
    api_port = int(os.environ.get("TG_API_PORT") or config.get("TG_API_PORT", 8530))
    record(
        "analytics",
        f"run-app TG_ANALYTICS env={os.environ.get('TG_ANALYTICS')} config={config.get('TG_ANALYTICS')}",
    )
    if os.environ.get("FAKE_TESTGEN_CRASH_ON_START") or os.environ.get("FAKE_TESTGEN_CRASH_ON_PORT") == str(
        ui_port
    ):
        print("fatal: the UI could not start", file=sys.stderr)
        return 1
    delay = float(os.environ.get("FAKE_TESTGEN_START_DELAY", "0"))
    time.sleep(delay)
    # Like TestGen: Streamlit binds STREAMLIT_SERVER_ADDRESS, the API TG_API_HOST (both default to
    # every address); HTTPS when config.env names a certificate and key (TG_*_TLS_ENABLED override).
    servers = [
        ThreadingHTTPServer((os.environ.get("STREAMLIT_SERVER_ADDRESS") or "0.0.0.0", ui_port), Ui),
        ThreadingHTTPServer((setting("TG_API_HOST", "0.0.0.0"), api_port), Api),
    ]
    cert, key = setting("SSL_CERT_FILE", ""), setting("SSL_KEY_FILE", "")
    files_present = bool(cert and key and os.path.isfile(cert) and os.path.isfile(key))
    for server, switch in zip(servers, ("TG_UI_TLS_ENABLED", "TG_API_TLS_ENABLED")):
        chosen = setting(switch, "").lower()
        if (chosen in ("yes", "true")) if chosen else files_present:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
    record(
        "network",
        json.dumps(
            {
                name: os.environ.get(name)
                for name in ("TG_UI_BASE_URL", "TG_BASE_URL", "TG_MCP_EXTRA_ALLOWED_HOSTS")
            }
        ),
    )
    for server in servers:
        # Checks for shutdown every 0.05 s: at the default 0.5 s, each stop waited up to a second.
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    print(f"Local URL: http://localhost:{ui_port}", flush=True)
    for number in range(int(os.environ.get("FAKE_TESTGEN_LOG_LINES", "0"))):  # a chatty app
        print(f"log line {number:06d} " + "x" * 80, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.shutdown()
    print("Stopped.", flush=True)
    return 0
