"""The single file's own life (dk_installer.py, made by build.py): check the Python, answer --help
and --version from the text the build stored, then run the package from its embedded sources or
from the runtime. Standard library only, like the bootstrap: build.py puts this module's code after
the bootstrap's as the file's executable head (without the import below, whose names are the
bootstrap's own there)."""

from __future__ import annotations

import os
import sys

from dk_installer.bootstrap import (
    BUNDLE_DIR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REQUIREMENTS,
    REFRESH_RUNTIME,
    RUNTIME_DIR,
    BundleError,
    RuntimeBuildLock,
    _bundle_arg,
    _bundle_members,
    _create_runtime,
    _missing_runtime_modules,
    home_unusable_message,
    install_package,
    installer_home,
    python_too_old_message,
    refresh_runtime,
    restrict_umask,
    runtime_is_current,
    unpack_bundle,
    venv_bin,
)


class SingleFileFinder:
    """Imports dk_installer.* from the single file's embedded sources, compiling each module only
    when something imports it (used when the Python running the file already has the runtime's
    packages, so no runtime venv is needed)."""

    def __init__(self, sources: dict[str, str], script: str) -> None:
        self.sources = sources
        self.single_file = script

    def _relative(self, name: str) -> tuple[str, bool] | None:
        base = name.replace(".", "/")
        if f"{base}/__init__.py" in self.sources:
            return f"{base}/__init__.py", True
        if f"{base}.py" in self.sources:
            return f"{base}.py", False
        return None

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        import importlib.util

        if name != "dk_installer" and not name.startswith("dk_installer."):
            return None
        found = self._relative(name)
        if found is None:
            return None
        relative, package = found
        spec = importlib.util.spec_from_loader(
            name, self, origin=f"{self.single_file}:{relative}", is_package=package
        )
        if spec is not None and package:
            spec.submodule_search_locations = []
        return spec

    def create_module(self, spec: object) -> None:
        return None

    def is_package(self, name: str) -> bool:
        found = self._relative(name)
        return bool(found and found[1])

    def get_code(self, name: str) -> object:
        """The module's code object, compiled now (runpy asks for __main__'s this way)."""
        found = self._relative(name)
        if found is None:
            raise ImportError(name)
        return compile(self.sources[found[0]], f"{self.single_file}:{found[0]}", "exec", dont_inherit=True)

    def exec_module(self, module: object) -> None:
        exec(self.get_code(module.__name__), module.__dict__)  # type: ignore[attr-defined]


def _stored_answer(argv: list[str], answers: dict[str, str], runtime_ready: bool) -> str | None:
    """--help, -h and --version as the CLI prints them, stored in the single file at build time
    for an 80-column screen (click's width when output is not a terminal). With a runtime and a
    wider terminal, the CLI answers itself, at that terminal's width."""
    import shutil

    answer = answers.get(" ".join(argv))
    if answer is None:
        return None
    width = max(min(shutil.get_terminal_size().columns, 100) - 2, 50)
    if runtime_ready and width != 78 and argv != ["--version"]:
        return None
    return answer


def run_single_file(
    argv: list[str], sources: dict[str, str], answers: dict[str, str], build_id: str, script: str
) -> None:
    """The single file's whole life: check the Python, answer --help and --version from the file
    itself, then run the package, in this interpreter when it has the runtime's packages, else in
    the runtime venv (built first when missing or out of date)."""
    restrict_umask()
    refusal = python_too_old_message(tuple(sys.version_info), sys.executable)
    if refusal:
        sys.stderr.write(refusal + "\n")
        raise SystemExit(EXIT_REQUIREMENTS)
    runtime = os.path.join(installer_home(), RUNTIME_DIR)
    if argv[:1] == [REFRESH_RUNTIME]:
        raise SystemExit(refresh_runtime(runtime, argv[1:], sources, build_id, answers["--version"]))
    in_process = not _missing_runtime_modules()
    answer = _stored_answer(argv, answers, in_process or runtime_is_current(runtime))
    if answer is not None:
        sys.stdout.write(answer)
        raise SystemExit(EXIT_OK)
    os.environ.setdefault("DK_INSTALLER_LAUNCHED_BY", "direct")
    if in_process:
        import runpy

        # The same hand-over as the runtime's `python -m dk_installer`, from the embedded sources.
        sys.meta_path.insert(0, SingleFileFinder(sources, script))
        runpy.run_module("dk_installer", run_name="__main__", alter_sys=True)
        return
    if os.environ.get("DK_INSTALLER_BOOTSTRAPPED"):
        sys.stderr.write(
            "dk-installer's runtime is incomplete (missing: "
            + ", ".join(_missing_runtime_modules())
            + f"). Remove {runtime} and run the command again.\n"
        )
        raise SystemExit(EXIT_FAILED)
    if not runtime_is_current(runtime):
        # `install --bundle`: the runtime's wheels come from the bundle, every file checked
        # before anything is written.
        bundle = _bundle_arg(argv)
        unpacked = os.path.join(os.path.dirname(runtime), BUNDLE_DIR)
        try:
            if bundle:
                _bundle_members(os.path.abspath(bundle), None)
            unusable = home_unusable_message(os.path.dirname(runtime))
            if unusable:
                sys.stderr.write(unusable + "\n")
                raise SystemExit(EXIT_REQUIREMENTS)
            if bundle:
                unpack_bundle(os.path.abspath(bundle), unpacked)
        except BundleError as exc:
            sys.stderr.write(f"Error: {exc}. Nothing was installed.\n")
            raise SystemExit(EXIT_FAILED) from None
        with RuntimeBuildLock(os.path.dirname(runtime)):
            if not runtime_is_current(runtime):  # another run may have built it while this one waited
                _create_runtime(
                    runtime, ["--find-links", os.path.join(unpacked, "wheels", "runtime")] if bundle else argv
                )
    python = venv_bin(runtime, "python")
    install_package(python, sources, build_id)
    os.environ["DK_INSTALLER_BOOTSTRAPPED"] = "1"
    # For the hints we print later: how the user ran us, not the runtime's copy.
    os.environ.setdefault("DK_INSTALLER_PYTHON", sys.executable)
    os.environ.setdefault("DK_INSTALLER_SCRIPT", script)
    # -I: the user's PYTHONPATH and current directory cannot shadow the runtime's modules.
    os.execv(python, [python, "-I", "-m", "dk_installer", *argv])
