"""Anonymous usage analytics: the consent rules, the allow-listed event (EVENT_SCHEMA), the spool
and the detached sender that never blocks or fails an action. record_event() is the one entry
point, called by the action boundary when an action ends."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from dk_installer import __version__
from dk_installer.bootstrap import CHILD_CWD
from dk_installer.config import (
    CI_PROVIDERS,
    LAUNCHERS,
    SavedChoices,
    now_iso,
    read_json_object,
    write_file_atomically,
)
from dk_installer.console import echo
from dk_installer.copies import installer_command
from dk_installer.defaults import ACTIONS
from dk_installer.errors import ERROR_CODES
from dk_installer.runner import deferred_signals
from dk_installer.tls import https_verify

if TYPE_CHECKING:
    from dk_installer.config import Settings
    from dk_installer.paths import Paths

log = logging.getLogger("dk_installer")


ANALYTICS_SCHEMA = 1
NOTICE_VERSION = 2  # version 2 also tells what TestGen's own analytics do
SPOOL_MAX_EVENTS = 100
SPOOL_MAX_BYTES = 256 * 1024
SPOOL_MAX_AGE_S = 5 * 24 * 3600
SENDER_LIFETIME_S = 10
SEND_TIMEOUT_S = (3.0, 3.0)
BREAKER_FAILURES = 3
BREAKER_PAUSE_S = 24 * 3600
HISTORY_KEPT = 20
PRIVACY_URL = "https://github.com/DataKitchen/dk-installer#privacy-and-analytics"

OUTCOMES = ("success", "failure", "aborted", "interrupted")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_VERSION_LIKE = re.compile(r"^[0-9A-Za-z._+~-]{1,64}$")
_CONTEXT = re.compile(r"^[a-z0-9_-]{1,32}$")
_UTC_OFFSET = re.compile(r"^[+-]\d\d:\d\d$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _matches(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and bool(pattern.match(value))


def _one_of(choices: Sequence[str]) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_identifier_list(value: Any) -> bool:
    return isinstance(value, list) and all(_matches(_IDENTIFIER)(item) for item in value)


# The allow-list: a property not named here is never sent, and a value its check rejects is
# sent as null. README's "Privacy and analytics" section shows a sample with exactly these keys.
EVENT_SCHEMA: dict[str, Callable[[Any], bool]] = {
    "token": _matches(re.compile(r"^[0-9A-Za-z]{1,64}$")),
    "distinct_id": _matches(_UUID),
    "time": _is_int,
    "$insert_id": _matches(_HEX32),
    "schema": _is_int,
    "action": _one_of(ACTIONS),
    "outcome": _one_of(OUTCOMES),
    "duration_s": lambda value: isinstance(value, float),
    "failed_step": _optional(_matches(_IDENTIFIER)),
    "error_code": _optional(_one_of(ERROR_CODES)),
    "error_type": _optional(_matches(_IDENTIFIER)),
    "missing_requirements": _is_identifier_list,
    "options": _is_identifier_list,
    "login_success": lambda value: value in (True, False, None),
    "installer_version": _matches(_VERSION_LIKE),
    "product_version": _optional(_matches(_VERSION_LIKE)),
    "python_version": _matches(_VERSION_LIKE),
    "python_implementation": _matches(_IDENTIFIER),
    "os": _matches(_VERSION_LIKE),
    "os_release": _optional(_matches(_VERSION_LIKE)),
    "os_distro": _optional(_matches(_VERSION_LIKE)),
    "os_distro_version": _optional(_matches(_VERSION_LIKE)),
    "arch": _optional(_matches(_VERSION_LIKE)),
    "package_engine": _optional(_one_of(("uv", "pip"))),
    "launched_by": _one_of(LAUNCHERS),
    "ci": lambda value: isinstance(value, bool),
    "ci_provider": _optional(_one_of([name for _, name in CI_PROVIDERS])),
    "context": _matches(_CONTEXT),
    "first_run": lambda value: isinstance(value, bool),
    "utc_offset": _matches(_UTC_OFFSET),
}
ENVIRONMENT_PROPERTIES = (
    "token",
    "distinct_id",
    "time",
    "$insert_id",
    "schema",
    "installer_version",
    "python_version",
    "python_implementation",
    "os",
    "os_release",
    "os_distro",
    "os_distro_version",
    "arch",
    "launched_by",
    "ci",
    "ci_provider",
    "context",
    "utc_offset",
)

ANALYTICS_NOTICE = f"""\
dk-installer sends anonymous usage analytics to DataKitchen (via Mixpanel) so the maintainers
can see which actions run, on which Python and OS, where installs fail and whether the login
works. Sent: the action and its outcome, the NAMES of options you set, error codes, versions,
a random id. Never sent: values you typed, paths, user or host names, IP addresses, passwords,
error messages. Events are sent in the background and never slow the installer down.
TestGen has analytics of its own (it sends its own events, including its user names); they
follow this choice: turning analytics off here turns TestGen's off too.
Turn it off with any of:
  --no-analytics                      for one run
  DO_NOT_TRACK=1                      environment variable
  DK_INSTALLER_ANALYTICS=no           environment variable
  dk_installer.py analytics disable   saved, also deletes the id and unsent events
See exactly what is sent: dk_installer.py analytics preview. Details: {PRIVACY_URL}
"""


@dataclasses.dataclass
class ActionResult:
    """What the action boundary knows when an action ends; the analytics event is made from it."""

    action: str
    options: list[str]
    outcome: str = "success"
    duration_s: float = 0.0
    failed_step: str | None = None
    error_code: str | None = None
    error_type: str | None = None
    missing_requirements: list[str] = dataclasses.field(default_factory=list)
    login_success: bool | None = None
    product_version: str | None = None
    package_engine: str | None = None


def analytics_consent(paths: Paths, settings: Settings, no_analytics_flag: bool) -> tuple[bool, str]:
    """(enabled, the rule that decided). Any one opt-out wins over every opt-in."""
    if no_analytics_flag:
        return False, "--no-analytics"
    if settings.do_not_track:
        return False, "DO_NOT_TRACK"
    if settings.analytics_opt_out:
        return False, "DK_INSTALLER_ANALYTICS"
    saved = SavedChoices(paths.saved_choices).get("analytics")
    if saved == "disabled":
        return False, "saved setting (analytics disable)"
    if saved == "enabled":
        return True, "saved setting (analytics enable)"
    return True, "default"


def _utc_offset() -> str:
    offset = datetime.datetime.now().astimezone().utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _distro_properties() -> dict[str, Any]:
    try:
        import distro

        # distro.id() would also run `lsb_release -a` and `uname`: 15+ ms of subprocesses for the
        # same answer that /etc/os-release gives (bench/analytics_overhead.py).
        info = distro.LinuxDistribution(include_lsb=False, include_uname=False, include_oslevel=False)
        return {"os_distro": info.id() or None, "os_distro_version": info.version() or None}
    except Exception:
        log.debug("analytics: distro unavailable", exc_info=True)
        return {"os_distro": None, "os_distro_version": None}


def environment_properties(distinct_id: str, settings: Settings) -> dict[str, Any]:
    import platform
    import uuid

    props: dict[str, Any] = {
        "token": settings.analytics_token,
        "distinct_id": distinct_id,
        "time": int(time.time() * 1000),
        "$insert_id": uuid.uuid4().hex,
        "schema": ANALYTICS_SCHEMA,
        "installer_version": __version__,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": platform.system(),
        "os_release": platform.release() or None,
        **_distro_properties(),
        "arch": platform.machine() or None,
        "launched_by": settings.launched_by,
        "ci": settings.ci,
        "ci_provider": settings.ci_provider,
        "utc_offset": _utc_offset(),
    }
    if settings.context:
        props["context"] = settings.context
    return props


def allowed_properties(props: dict[str, Any]) -> dict[str, Any]:
    """Apply the allow-list: unknown keys are dropped, values failing their check become null."""
    clean: dict[str, Any] = {}
    for key, value in props.items():
        check = EVENT_SCHEMA.get(key)
        if check is not None:
            clean[key] = value if check(value) else None
    return clean


def build_event(
    result: ActionResult, distinct_id: str, first_run: bool, settings: Settings
) -> dict[str, Any]:
    props = environment_properties(distinct_id, settings)
    props.update(
        action=result.action,
        outcome=result.outcome,
        duration_s=round(float(result.duration_s), 1),
        failed_step=result.failed_step,
        error_code=result.error_code,
        error_type=result.error_type,
        missing_requirements=list(result.missing_requirements),
        options=sorted(result.options),
        login_success=result.login_success,
        product_version=result.product_version,
        package_engine=result.package_engine,
        first_run=first_run,
    )
    return {"event": result.action, "properties": allowed_properties(props)}


def build_bootstrap_event(distinct_id: str, settings: Settings) -> dict[str, Any]:
    props = environment_properties(distinct_id, settings)
    return {
        "event": "bootstrap",
        "properties": allowed_properties({key: props[key] for key in ENVIRONMENT_PROPERTIES if key in props}),
    }


class Spool:
    """Events waiting to be sent, one JSON object per line, capped in count, size and age."""

    def __init__(self, paths: Paths) -> None:
        self.path = paths.spool
        self.lock_path = paths.spool_lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        import fcntl

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and isinstance(event.get("properties"), dict):
                    events.append(event)
        return events

    @staticmethod
    def _prune(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        oldest = (time.time() - SPOOL_MAX_AGE_S) * 1000
        kept = [
            e
            for e in events
            if isinstance(e["properties"].get("time"), int) and e["properties"]["time"] >= oldest
        ][-SPOOL_MAX_EVENTS:]
        while kept and sum(len(json.dumps(e)) + 1 for e in kept) > SPOOL_MAX_BYTES:
            kept.pop(0)
        return kept

    def _write(self, events: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        write_file_atomically(self.path, text, mode=0o600)

    def append(self, new: list[dict[str, Any]]) -> None:
        with self.locked():
            self._write(self._prune(self._read() + new))

    def pending(self) -> list[dict[str, Any]]:
        with self.locked():
            events = self._prune(self._read())
            self._write(events)
            return events

    def remove(self, insert_ids: set[str]) -> None:
        with self.locked():
            self._write([e for e in self._read() if e["properties"].get("$insert_id") not in insert_ids])


class SenderState:
    """The circuit breaker and the last send result, shared by the sender and `analytics status`."""

    def __init__(self, paths: Paths) -> None:
        self.path = paths.sender_state
        self.values = read_json_object(self.path)

    @property
    def paused(self) -> bool:
        return float(self.values.get("paused_until", 0)) > time.time()

    def record(self, delivered: bool, result: str) -> None:
        failures = 0 if delivered else int(self.values.get("failures", 0)) + 1
        self.values.update(failures=failures, last_result=result, last_attempt=now_iso())
        if failures >= BREAKER_FAILURES:
            self.values.update(paused_until=time.time() + BREAKER_PAUSE_S, failures=0)
        write_file_atomically(self.path, json.dumps(self.values) + "\n", mode=0o600)


def _append_history(paths: Paths, events: list[dict[str, Any]], result: str) -> None:
    path = paths.history
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
    lines += [json.dumps({"attempted": now_iso(), "result": result, "event": e}) for e in events]
    write_file_atomically(path, "".join(line + "\n" for line in lines[-HISTORY_KEPT:]), mode=0o600)


def read_history(paths: Paths) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in paths.history.read_text().splitlines()]
    except (OSError, ValueError):
        return []


def _sender_running(lock_path: Path) -> bool:
    import fcntl

    try:
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


def _start_sender(paths: Paths) -> None:
    if SenderState(paths).paused or _sender_running(paths.sender_lock):
        return
    if not os.path.exists(sys.executable):
        return  # uninstall removed the runtime: the spool waits for the next run
    subprocess.Popen(
        installer_command("analytics", "send-spool"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=CHILD_CWD,
        start_new_session=True,
        close_fds=True,
    )


def record_event(result: ActionResult, paths: Paths, settings: Settings, no_analytics_flag: bool) -> None:
    """THE analytics entry point. Never raises, never waits for the network."""
    try:
        with deferred_signals():
            _record_event(result, paths, settings, no_analytics_flag)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.debug("analytics: recording failed", exc_info=True)


def _record_event(result: ActionResult, paths: Paths, settings: Settings, no_analytics_flag: bool) -> None:
    import uuid

    enabled, _rule = analytics_consent(paths, settings, no_analytics_flag)
    if not enabled:
        return
    saved = SavedChoices(paths.saved_choices)
    distinct_id = saved.get("anonymous_id")
    if not (isinstance(distinct_id, str) and _UUID.match(distinct_id)):
        distinct_id = str(uuid.uuid4())
        saved.update(anonymous_id=distinct_id)
    events = []
    bootstrap_ping = settings.launched_by == "install.sh" and not saved.get("bootstrap_sent")
    if bootstrap_ping:
        events.append(build_bootstrap_event(distinct_id, settings))
    first_run = not saved.get("first_event_recorded")
    events.append(build_event(result, distinct_id, first_run, settings))
    if settings.analytics_debug:
        for event in events:
            click.echo("analytics debug (not sent): " + json.dumps(event, sort_keys=True), err=True)
        return
    Spool(paths).append(events)
    changes = {"first_event_recorded": True, "bootstrap_sent": bootstrap_ping or None}
    changes = {key: value for key, value in changes.items() if value and not saved.get(key)}
    if changes:
        saved.update(**changes)
    _start_sender(paths)


def show_notice_once(paths: Paths, enabled: bool) -> None:
    """The notice, before the first step of the first action (where it is read, not under an
    error message at the end), and once more whenever NOTICE_VERSION changes. Never raises."""
    if not enabled:
        return
    try:
        saved = SavedChoices(paths.saved_choices)
        if saved.get("notice_version") != NOTICE_VERSION:
            echo(ANALYTICS_NOTICE, err=True)
            saved.update(notice_version=NOTICE_VERSION)
    except OSError:
        log.debug("analytics: the notice could not be recorded", exc_info=True)


def send_spool(paths: Paths, settings: Settings) -> None:
    """The detached sender's whole life: at most SENDER_LIFETIME_S, at most one at a time."""
    import fcntl

    signal.alarm(SENDER_LIFETIME_S)  # SIGALRM's default action ends the process, even inside DNS
    paths.analytics.mkdir(parents=True, exist_ok=True)
    with open(paths.sender_lock, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        spool = Spool(paths)
        sent: set[str] = set()
        while True:
            events = [e for e in spool.pending() if e["properties"].get("$insert_id") not in sent]
            state = SenderState(paths)
            if not events or state.paused:
                return
            delivered, result = _post_events(events, settings)
            state.record(delivered, result)
            _append_history(paths, events, result)
            if not delivered:
                return
            ids = {str(e["properties"].get("$insert_id")) for e in events}
            spool.remove(ids)
            sent |= ids


def _post_events(events: list[dict[str, Any]], settings: Settings) -> tuple[bool, str]:
    import requests

    base = settings.analytics_url
    body = json.dumps(
        [{"event": e["event"], "properties": allowed_properties(e["properties"])} for e in events]
    )
    try:
        response = requests.post(
            f"{base}/track",
            params={"ip": "0", "verbose": "1"},
            data=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"dk-installer/{__version__}",
            },
            timeout=SEND_TIMEOUT_S,
            verify=https_verify(settings),
        )
    except requests.RequestException as exc:
        return False, f"failed: {type(exc).__name__}"
    if response.status_code != 200:
        return False, f"failed: HTTP {response.status_code}"
    text = response.text.strip()
    try:
        accepted = text == "1" or json.loads(text).get("status") == 1
    except (ValueError, AttributeError):
        accepted = False
    return (True, "delivered") if accepted else (False, "failed: rejected by the collector")
