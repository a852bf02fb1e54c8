"""What can go wrong, as the user and analytics see it: the ErrorCode enum, InstallerError (a
failure the user can act on) and its kinds, and the signal handler that turns SIGTERM and SIGHUP
into an interruption like Ctrl+C."""

from __future__ import annotations

import enum

from dk_installer.bootstrap import EXIT_FAILED


class StateCorrupt(Exception):
    """state.json exists but cannot be trusted."""


class ErrorCode(str, enum.Enum):
    """What went wrong, as analytics sees it (README "Error codes"). An enum, so that a typo is an
    error where it is written, never a silent null in the event."""

    BACKUP_FAILED = "backup_failed"
    BACKUP_INVALID = "backup_invalid"
    BUNDLE_INVALID = "bundle_invalid"
    BUSY = "busy"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CONFIG_NOT_WRITABLE = "config_not_writable"
    DATABASE_AUTH_FAILED = "database_auth_failed"
    DATABASE_IN_USE = "database_in_use"
    DATABASE_MISSING = "database_missing"
    DATABASE_PRIVILEGES = "database_privileges"
    DATABASE_TLS = "database_tls"
    DATABASE_UNREACHABLE = "database_unreachable"
    DATABASE_VERSION = "database_version"
    DISK_FULL = "disk_full"
    DOWNLOAD_FAILED = "download_failed"
    HOME_NOT_WRITABLE = "home_not_writable"
    HTTPS_WARNING = "https_warning"
    INDEX_UNREACHABLE = "index_unreachable"
    INTERRUPTED = "interrupted"
    LOGIN_FAILED = "login_failed"
    NOT_INSTALLED = "not_installed"
    PACKAGE_INSTALL_FAILED = "package_install_failed"
    PACKAGE_NOT_FOUND = "package_not_found"
    PORT_IN_USE = "port_in_use"
    PYTHON_NOT_FOUND = "python_not_found"
    PYTHON_TOO_OLD = "python_too_old"
    SETUP_FAILED = "setup_failed"
    START_FAILED = "start_failed"
    STATE_CORRUPT = "state_corrupt"
    STOP_FAILED = "stop_failed"
    UPDATE_FAILED = "update_failed"
    UPGRADE_FAILED = "upgrade_failed"
    VENV_BROKEN = "venv_broken"
    VERSION_CONFLICT = "version_conflict"
    SERVICE_UNAVAILABLE = "service_unavailable"
    SUBPROCESS_FAILED = "subprocess_failed"
    UNEXPECTED = "unexpected"


ERROR_CODES = tuple(code.value for code in ErrorCode)


class InstallerError(Exception):
    """A failure the user can act on. `code` is what analytics sees (a string is checked)."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str = ErrorCode.UNEXPECTED,
        exit_code: int = EXIT_FAILED,
        details: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = ErrorCode(code)
        self.exit_code = exit_code
        self.details = details


class StepSkipped(Exception):
    """Raised by a step that has nothing to do; the message says why."""


class CommandFailed(InstallerError):
    pass


def raise_keyboard_interrupt(signum: int, frame: object) -> None:
    """The handler for SIGTERM and SIGHUP: they interrupt like Ctrl+C (rolled back, exit 130)."""
    raise KeyboardInterrupt
