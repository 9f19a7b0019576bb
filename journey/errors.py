"""Errors raised for a user's mistake: they carry a message that names the file/field/row and the rule."""

from __future__ import annotations


class ParcoursError(Exception):
    """Base class: the CLI prints these without a traceback and exits non-zero."""


class ConfigError(ParcoursError):
    """A YAML business-rule file (catalog, policies) or a setting is invalid."""


class DataContractError(ParcoursError):
    """Input data cannot be used at all (missing table or column, unreadable file)."""


class NotReadyError(ParcoursError):
    """A step ran before the one it needs (e.g. serving before training)."""
