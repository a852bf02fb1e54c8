"""The payload never carries the home directory, user name, host name, an IP address, an email,
the password or any path, whatever error an action meets in whichever step; and README's sample
payload has exactly the keys the code sends."""

from __future__ import annotations

import getpass
import importlib
import json
import re
import socket
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dk_installer.actions.boundary import Invocation, perform
from dk_installer.analytics import EVENT_SCHEMA, allowed_properties
from dk_installer.bootstrap import EXIT_FAILED, EXIT_INTERRUPTED
from dk_installer.config import CI_PROVIDERS
from dk_installer.errors import ERROR_CODES, CommandFailed, InstallerError, StateCorrupt
from dk_installer.steps.base import Step, run_steps


def all_steps() -> list[type[Step]]:
    """Every Step the package defines (each module imported first, so none is missed)."""
    package = ROOT / "src" / "dk_installer"
    for path in package.rglob("*.py"):
        if path.name != "__main__.py":
            parts = path.relative_to(package.parent).with_suffix("").parts
            importlib.import_module(".".join(p for p in parts if p != "__init__"))
    found, queue = [], [Step]
    while queue:
        for sub in queue.pop().__subclasses__():
            found.append(sub)
            queue.append(sub)
    return sorted(
        (step for step in found if step.__module__.startswith("dk_installer.")), key=lambda s: s.name
    )


STEPS = all_steps()
SENSITIVE = [
    str(Path.home()),
    "/home/alice/projects/secret-project",
    "192.168.10.23",
    "10.1.2.3",
    "alice@example.com",
    "S3cret-Passw0rd-value",
    "C:\\Users\\alice",
    socket.gethostname(),
    getpass.getuser(),
]
SENSITIVE = [s for s in SENSITIVE if len(s) >= 4]  # a 1-3 letter user name would match by chance
ERRORS = [
    InstallerError,
    CommandFailed,
    RuntimeError,
    OSError,
    ValueError,
    KeyboardInterrupt,
    StateCorrupt,
]


def exploding(step: type[Step], error: BaseException) -> Step:
    """The real step's name and title, with a run() that fails and an undo() that does nothing.
    Required even where the real step is best-effort, so that every error ends the action."""
    broken = type(
        step.__name__,
        (step,),
        {
            "__init__": lambda self: None,
            "required": True,
            "run": lambda self, ctx, progress: (_ for _ in ()).throw(error),
            "undo": lambda self, ctx: None,
        },
    )
    return broken()


MESSAGE_MARKER = "free-text-marker-7f3a"


def make_error(kind: type[BaseException], text: str) -> BaseException:
    message = f"{MESSAGE_MARKER} {text} {' '.join(SENSITIVE)}"
    if kind in (InstallerError, CommandFailed):
        error = kind(message, code="setup_failed", details="\n".join(SENSITIVE))
    elif kind is OSError:
        error = OSError(13, message, SENSITIVE[1])
    elif kind is KeyboardInterrupt:
        error = KeyboardInterrupt(message)
    else:
        error = kind(message)
    error.path = SENSITIVE[1]  # type: ignore[attr-defined]
    error.command = ["testgen", "--password", SENSITIVE[5]]  # type: ignore[attr-defined]
    return error


def test_every_step_is_in_the_matrix() -> None:
    names = [step.name for step in STEPS]
    assert len(names) == len(set(names)) >= 22, names


# Every step x every error kind (exhaustive); hypothesis varies only the text and the options.
@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.name)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(max_size=40),
    options=st.lists(st.sampled_from(["port", "index_url", "python", "no_demo"]), unique=True),
)
def test_no_sensitive_string_reaches_the_payload(
    step: type[Step],
    kind: type[BaseException],
    text: str,
    options: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DK_INSTALLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DK_INSTALLER_ANALYTICS_DEBUG", "1")
    monkeypatch.setenv("DK_INSTALLER_CONTEXT", "ci-runner")
    for name in ("DO_NOT_TRACK", "DK_INSTALLER_ANALYTICS"):
        monkeypatch.delenv(name, raising=False)
    error = make_error(kind, text)
    invocation = Invocation("install", options, no_analytics=False, verbose=False)
    code = perform(invocation, lambda ctx: run_steps(ctx, [exploding(step, error)]))
    assert code in (EXIT_FAILED, EXIT_INTERRUPTED)
    captured = capsys.readouterr()
    payload = captured.err.split("analytics debug (not sent): ", 1)[1].splitlines()[0]
    event = json.loads(payload)
    assert set(event["properties"]) <= set(EVENT_SCHEMA)
    assert event["properties"]["failed_step"] == step.name
    for secret in SENSITIVE:
        assert secret not in payload, secret
    assert MESSAGE_MARKER not in payload


def readme_sample() -> dict:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Privacy and analytics", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block, "README's privacy section needs a ```json sample payload"
    return json.loads(block.group(1))


def test_readme_sample_payload_matches_the_code() -> None:
    [event] = readme_sample()
    assert set(event["properties"]) == set(EVENT_SCHEMA)
    assert allowed_properties(event["properties"]) == event["properties"]  # every value passes its check


def test_readme_documents_every_error_code_and_ci_provider() -> None:
    readme = (ROOT / "README.md").read_text()
    for code in ERROR_CODES:
        assert f"`{code}`" in readme, code
    for _, provider in CI_PROVIDERS:
        assert f"`{provider}`" in readme, provider
