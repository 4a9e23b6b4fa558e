"""The project's own exception types.

Each message names the file, column or row at fault and what was expected, so
the CLI can print it as it is, without a traceback, and exit non-zero.
"""


class PoisonguardError(Exception):
    """Base of every error the CLI reports as a plain message."""

    exit_code = 2


class InputError(PoisonguardError):
    """A batch or reference file is missing, unreadable or malformed."""


class ConfigError(PoisonguardError):
    """The configuration file or options are wrong."""


class BatchRejected(PoisonguardError):
    """A batch-level check failed: the whole batch cannot be trusted."""

    exit_code = 3


class SigningError(PoisonguardError):
    """A key could not be read, or a signature could not be made."""


class VerificationError(PoisonguardError):
    """A signed folder does not match its signature."""

    exit_code = 4
