"""The step of `configure` that changes files: TestGen's ports, listen address and HTTPS in
config.env, the certificate files, the receipt and the credentials' URL, with what was there kept
aside until the new settings run (the stop, restart and login check are install's steps)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.config import InstallState, now_iso, remove_tree, write_file_atomically
from dk_installer.steps.base import Step
from dk_installer.testgen.config import parse_credentials, write_credentials

if TYPE_CHECKING:
    from dk_installer.console import Progress
    from dk_installer.journal import JournalRecord
    from dk_installer.paths import Paths
    from dk_installer.steps.base import ActionContext


@dataclasses.dataclass(frozen=True)
class Setup:
    """How TestGen is reached: what `configure` changes."""

    ui_port: int
    api_port: int
    listen: str
    tls: bool

    @classmethod
    def of(cls, state: InstallState) -> Setup:
        return cls(state.ui_port, state.api_port, state.listen, state.tls)


def _kept_files(paths: Paths) -> list[tuple[Path, str]]:
    """The files configure changes, each with its name in the kept copy."""
    return [
        (paths.config_env, "config.env"),
        (paths.state, "state.json"),
        (paths.credentials, "credentials.txt"),
    ]


def _partial(paths: Paths) -> Path:
    return paths.settings_before.with_name(f".{paths.settings_before.name}.partial")


def keep_settings(paths: Paths) -> None:
    """Copy what configure changes aside, complete before it gets its final name (a kill while
    copying leaves only the partial copy, and nothing changed yet)."""
    partial = _partial(paths)
    remove_tree(partial)
    remove_tree(paths.settings_before)
    partial.mkdir(mode=0o700, parents=True)
    for path, name in _kept_files(paths):
        if path.exists():
            shutil.copy2(path, partial / name)
    tls = paths.tls_cert.parent
    if tls.exists():
        shutil.copytree(tls, partial / "tls", symlinks=True)
    os.rename(partial, paths.settings_before)


def put_back_settings(paths: Paths) -> None:
    """The kept settings go back in place. Copied, not moved, so that a kill half-way through
    is repaired by doing it again; the copy goes only at the end."""
    kept = paths.settings_before
    if kept.is_dir():
        for path, name in _kept_files(paths):
            if (kept / name).exists():
                temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                shutil.copy2(kept / name, temporary)
                os.replace(temporary, path)
        tls = paths.tls_cert.parent
        remove_tree(tls)
        if (kept / "tls").exists():
            shutil.copytree(kept / "tls", tls, symlinks=True)
    drop_kept_settings(paths)


def drop_kept_settings(paths: Paths) -> None:
    remove_tree(_partial(paths))
    remove_tree(paths.settings_before)


class ApplySettings(Step):
    """Write the new ports, listen address and HTTPS: the certificate files (installed, swapped or
    removed), config.env, the receipt and the URL in the credentials file."""

    name = "apply_settings"
    title = "Write the new settings"

    def __init__(self, previous: InstallState, target: Setup, cert: Path | None, key: Path | None) -> None:
        self.previous = previous
        self.target = target
        self.cert = cert
        self.key = key
        self.kept = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        paths = ctx.paths
        target = self.target
        progress.update("keeping the current settings aside")
        keep_settings(paths)
        self.kept = True
        config = ctx.testgen.config
        if self.cert is not None and self.key is not None:
            paths.tls_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_file_atomically(paths.tls_cert, self.cert.read_text())
            write_file_atomically(paths.tls_key, self.key.read_text(), mode=0o600)
            config.update(
                SSL_CERT_FILE=str(paths.tls_cert),
                SSL_KEY_FILE=str(paths.tls_key),
                TG_UI_TLS_ENABLED="yes",
                TG_API_TLS_ENABLED="yes",
            )
        elif not target.tls:
            config.update(
                SSL_CERT_FILE=None, SSL_KEY_FILE=None, TG_UI_TLS_ENABLED=None, TG_API_TLS_ENABLED=None
            )
            remove_tree(paths.tls_cert.parent)
        # TestGen's setup wrote the ports into config.env; the installer's environment wins when
        # it starts TestGen, but a `testgen` run by hand reads them from here.
        config.update(TG_UI_PORT=str(target.ui_port), TG_API_PORT=str(target.api_port))
        state = dataclasses.replace(
            self.previous,
            ui_port=target.ui_port,
            api_port=target.api_port,
            listen=target.listen,
            tls=target.tls,
            updated_at=now_iso(),
        )
        state.save(paths.state)
        ctx.use_receipt(state)  # from here on, ctx.testgen is the TestGen of the new settings
        known = parse_credentials(paths.credentials)
        if known:
            write_credentials(paths, known[0], known[1], ctx.testgen.ui_url)
        progress.result = f"UI {ctx.testgen.ui_url}, API {ctx.testgen.api_url}"

    def undo(self, ctx: ActionContext) -> None:
        if self.kept:
            put_back_settings(ctx.paths)
            ctx.use_receipt(self.previous)
        else:
            drop_kept_settings(ctx.paths)

    def commit(self, ctx: ActionContext) -> None:
        drop_kept_settings(ctx.paths)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        put_back_settings(paths)

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        drop_kept_settings(paths)
