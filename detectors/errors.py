"""What the detectors raise when given data they cannot work with."""


class DetectorError(ValueError):
    """A detector was given data it cannot work with (the message names the problem)."""


class NotEnoughData(DetectorError):
    """Too few rows, or rows of too few labels, for this detector to judge anything.

    Not a misuse: a small batch or reference is legitimate input. The
    pipeline skips the detector for that batch and says so in the report;
    called directly, it is an error like any other ``DetectorError``.
    """
