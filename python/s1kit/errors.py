"""Exceptions s1kit raises for domain failures.

Bad arguments raise ``ValueError`` / ``TypeError`` with a message that names the argument and the fix;
failures of the work itself (a tokenizer that cannot spell a delimiter, a corrupt checkpoint, a data
file without a needed column) raise subclasses of :class:`S1kitError`.
"""

from __future__ import annotations


class S1kitError(Exception):
    """Base class of every domain failure in s1kit."""


class TokenizationError(S1kitError):
    """A string (delimiter, extension, answer prefix) cannot be represented by the tokenizer."""


class DataError(S1kitError):
    """Input data is missing a required field or cannot be read."""


class ConfigError(S1kitError):
    """A run configuration is inconsistent; the message says which values conflict and how to fix them."""


class CheckpointError(S1kitError):
    """A checkpoint is missing, incomplete or does not match the run."""


class ConfigFieldError(ValueError):
    """A library configuration value is bad. The message names configuration fields in backticks
    (```skip```, ```domain_method```); ``fields`` lists them, so that a command line can name its own
    flags instead (see :meth:`for_flags`)."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields

    def for_flags(self, flags: dict[str, str]) -> str:
        """The message with every backticked field that ``flags`` maps replaced by its flag."""
        text = str(self)
        for name in self.fields:
            text = text.replace(f"`{name}`", flags.get(name, f"`{name}`"))
        return text
