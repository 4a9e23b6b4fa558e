"""What this package raises when it is given something it cannot work with.

Subclasses of ``ValueError`` with a message that names the file or column; the
pipeline reports them like its own input errors (exit code 2, one line).
"""


class ExpectationError(ValueError):
    """Base of the expectation errors."""


class SuiteError(ExpectationError):
    """A suite file is missing, unreadable or invalid, or inference options are wrong."""


class FrameError(ExpectationError):
    """The frame lacks a column, or a column holds values its kind does not allow."""
