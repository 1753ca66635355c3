"""Errors that reach a user as one readable line."""

from __future__ import annotations


class TenpoError(Exception):
    """Base for errors the command line reports as one line on stderr with exit status 1."""


class ConfigError(TenpoError):
    """A config file is missing, unreadable or has a wrong field."""


class UserError(TenpoError):
    """The user asked for something that cannot be done (unknown member, bad code, short payment...)."""
