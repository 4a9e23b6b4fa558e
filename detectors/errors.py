"""What the detectors raise when given data they cannot work with."""


class DetectorError(ValueError):
    """A detector was given data it cannot work with (the message names the problem)."""
