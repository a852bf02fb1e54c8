"""The payload never carries the home directory, user name, host name, an IP address, an email,
the password or any path, whatever error an action meets in whichever step; and README's sample
payload has exactly the keys the code sends."""

from __future__ import annotations

import getpass
import json
import re
import socket
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dk_installer as dk


def all_steps() -> list[type[dk.Step]]:
    found, queue = [], [dk.Step]
    while queue:
        for sub in queue.pop().__subclasses__():
            found.append(sub)
            queue.append(sub)
    return [step for step in found if step.__module__ == "dk_installer"]


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
    dk.InstallerError,
    dk.CommandFailed,
    RuntimeError,
    OSError,
    ValueError,
    KeyboardInterrupt,
    dk.StateCorrupt,
]


def exploding(step: type[dk.Step], error: BaseException) -> dk.Step:
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
    if kind in (dk.InstallerError, dk.CommandFailed):
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    step=st.sampled_from(STEPS),
    kind=st.sampled_from(ERRORS),
    text=st.text(max_size=40),
    options=st.lists(st.sampled_from(["port", "index_url", "python", "no_demo"]), unique=True),
)
def test_no_sensitive_string_reaches_the_payload(
    step: type[dk.Step],
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
    invocation = dk.Invocation("install", options, no_analytics=False, verbose=False)
    code = dk.perform(invocation, lambda ctx: dk.run_steps(ctx, [exploding(step, error)]))
    assert code in (dk.EXIT_FAILED, dk.EXIT_INTERRUPTED)
    captured = capsys.readouterr()
    payload = captured.err.split("analytics debug (not sent): ", 1)[1].splitlines()[0]
    event = json.loads(payload)
    assert set(event["properties"]) <= set(dk.EVENT_SCHEMA)
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
    assert set(event["properties"]) == set(dk.EVENT_SCHEMA)
    assert dk.allowed_properties(event["properties"]) == event["properties"]  # every value passes its check


def test_readme_documents_every_error_code_and_ci_provider() -> None:
    readme = (ROOT / "README.md").read_text()
    for code in dk.ERROR_CODES:
        assert f"`{code}`" in readme, code
    for _, provider in dk.CI_PROVIDERS:
        assert f"`{provider}`" in readme, provider
