"""The project's own exception types.

Each message names the file, column or row at fault and what was expected, so
the CLI can print it as it is, without a traceback, and exit non-zero.
"""
from poisonguard.detectors.errors import DetectorError
from poisonguard.expectations.errors import ExpectationError


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


class ReviewConflict(PoisonguardError):
    """A quarantine entry was already decided (by someone else, or before)."""

    exit_code = 5


class UnknownEntry(PoisonguardError):
    """No quarantine entry has that id."""


# Everything the command line reports as one line with its exit code, no
# traceback: the project's own errors, and those of the detector and
# expectation packages (which cannot import these types: they sit below).
USER_ERRORS = (PoisonguardError, DetectorError, ExpectationError)


def exit_code(error: BaseException) -> int:
    """The command line's exit code for a user error (2 unless the type says otherwise)."""
    return getattr(error, "exit_code", 2)
