"""The package's error base and the settings error; the provider client's errors are in
:mod:`vpsbackup.provider.errors`."""

from __future__ import annotations


class VpsBackupError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(VpsBackupError):
    """A setting is missing or invalid, or a configured secret cannot be read."""
