"""The product's defaults that the command line shows: ports, the listen address, the actions.
Kept apart so that `--help` needs nothing heavier than this."""

from __future__ import annotations

DEFAULT_UI_PORT = 8501
DEFAULT_API_PORT = 8530
LOOPBACK = "127.0.0.1"  # where new installs listen unless --listen says otherwise
ALL_ADDRESSES = "0.0.0.0"

# Every action that records an analytics event (README "Privacy and analytics").
ACTIONS = (
    "install",
    "upgrade",
    "start",
    "stop",
    "status",
    "uninstall",
    "doctor",
    "logs",
    "service_enable",
    "service_disable",
    "service_status",
    "backup",
    "restore",
    "configure",
    "self_update",
    "bundle",
    "migrate_database",
)
