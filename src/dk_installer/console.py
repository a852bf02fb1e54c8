"""What the user sees: steps with OK / SKIPPED / FAILED, live progress on a terminal, plain lines
elsewhere, colour only on a terminal and never with NO_COLOR; writes that never raise."""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import click

from dk_installer.errors import StepSkipped

log = logging.getLogger("dk_installer")


def echo(text: str, *, err: bool = False, nl: bool = True) -> None:
    """click.echo that never raises: after SIGHUP the terminal is gone (EIO) or a pipe is closed,
    and the rollback that follows must still run to the end."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(text, err=err, nl=nl)


class Console:
    """What the user sees. Progress and messages go to stdout, problems to stderr. Colour only on
    a terminal, never with NO_COLOR."""

    STATUS_COLOURS: ClassVar[dict[str, str]] = {"OK": "green", "SKIPPED": "yellow", "FAILED": "red"}

    def __init__(self, quiet: bool = False, no_color: bool = False) -> None:
        self.quiet = quiet
        self.interactive = sys.stdout.isatty()
        self.colour = not no_color and self.interactive
        self.error_colour = not no_color and sys.stderr.isatty()

    def style(self, text: str, **kwargs: Any) -> str:
        return click.style(text, **kwargs) if self.colour else text

    def say(self, text: str = "") -> None:
        if not self.quiet:
            echo(text)

    def warn(self, text: str) -> None:
        echo(click.style(text, fg="yellow") if self.error_colour else text, err=True)

    def error(self, text: str) -> None:
        echo(click.style(text, fg="red") if self.error_colour else text, err=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Progress]:
        progress = Progress(self, title)
        progress.begin()
        try:
            yield progress
        except StepSkipped as skipped:
            progress.end("SKIPPED", str(skipped))
            raise
        except BaseException:
            progress.end("FAILED")
            raise
        progress.end("OK", progress.result)


class Progress:
    """A step's line: a live spinner with elapsed time and current activity on a terminal,
    plain start and end lines (and a heartbeat every 15 s) elsewhere."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.activity = ""
        self.result = ""
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = shutil.get_terminal_size((100, 20)).columns

    def update(self, activity: str) -> None:
        self.activity = " ".join(activity.split())

    def begin(self) -> None:
        log.info("step: %s", self.title)
        if self.console.quiet:
            return
        if not self.console.interactive:
            echo(f"{self.title} ...")
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        frame = 0
        interval = 0.1 if self.console.interactive else 15.0
        while not self._stop.wait(interval):
            elapsed = time.monotonic() - self.started
            if self.console.interactive:
                if elapsed < 1:
                    continue
                line = (
                    f"{self.FRAMES[frame % len(self.FRAMES)]} {self.title}  {elapsed:4.0f}s  {self.activity}"
                )
                echo("\r\x1b[2K" + line[: self._width - 1], nl=False)
                frame += 1
            else:
                echo(f"  ... {elapsed:.0f}s {self.activity}".rstrip())

    def end(self, status: str, detail: str = "") -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        elapsed = time.monotonic() - self.started
        log.info("step %s: %s %s (%.1fs)", self.title, status, detail, elapsed)
        if self.console.quiet:
            return
        if self.console.interactive:
            echo("\r\x1b[2K", nl=False)
        label = self.console.style(f"{status:<7}", fg=Console.STATUS_COLOURS[status], bold=True)
        suffix = f"  {detail}" if detail else ""
        echo(f"{label} {self.title} ({elapsed:.1f}s){suffix}")


def textwrap_indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
