"""Errors raised by probes/ (which never imports liedetect)."""


class ProbeError(ValueError):
    """Unusable input to a probe: one class, NaN, wrong shape, too few examples, wrong file."""
