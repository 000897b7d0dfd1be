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
