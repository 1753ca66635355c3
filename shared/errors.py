"""Errors that reach a user as one readable line."""

from __future__ import annotations


class TenpoError(Exception):
    """Base for errors the command line reports as one line on stderr with exit status 1."""


class ConfigError(TenpoError):
    """A config file is missing, unreadable or has a wrong field."""


class UserError(TenpoError):
    """The user asked for something that cannot be done (unknown member, bad code, short payment...)."""


class MissingExtra(ConfigError):
    """An optional part of Tenpo is used but its dependencies (an extra in pyproject.toml) are not installed."""

    def __init__(self, feature: str, extra: str, cause: ImportError) -> None:
        reason = (str(cause).strip().splitlines() or ["not installed"])[0]
        super().__init__(f"{feature} needs the {extra!r} extra: pip install 'tenpo[{extra}]' ({reason})")
