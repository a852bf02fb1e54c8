"""Versions and version specifiers, read the way pip and uv read them (the `packaging` library):
what `--version` accepts, whether an installed TestGen matches a specifier, which is newer."""

from __future__ import annotations

DEFAULT_VERSION_SPEC = ">=5,<6"  # newest TestGen 5.x


def version_specifier(requested: str | None) -> str:
    """'5.92.2' -> '==5.92.2'; '>=5.90,<6' stays (spaces dropped); None -> newest 5.x. Raises
    ValueError for anything else."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    if not requested:
        return DEFAULT_VERSION_SPEC
    requested = requested.strip()
    try:
        Version(requested)
    except InvalidVersion:
        pass
    else:
        return f"=={requested}"
    try:
        SpecifierSet(requested)
    except InvalidSpecifier:
        raise ValueError(
            f"'{requested}' is neither a version (5.92.2) nor a specifier (>=5.90,<6)."
        ) from None
    return requested.replace(" ", "")


def spec_allows(spec: str, version: str) -> bool:
    """Does `version` satisfy `spec`? (False for anything that is not a valid version.)"""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


def is_newer(version: str, than: str) -> bool:
    """Is `version` newer than `than`? (False when either is not a valid version.)"""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) > Version(than)
    except InvalidVersion:
        return False
