"""Installed libraries' versions, read from their package metadata instead of importing them: importing
scikit-learn costs half a second of CPU, in every worker that only records its version."""

from __future__ import annotations

from importlib import metadata


def installed_version(distribution: str) -> str:
    """The version `distribution` (e.g. "scikit-learn") is installed at, as its package's `__version__` says it
    for release builds."""
    return metadata.version(distribution)
