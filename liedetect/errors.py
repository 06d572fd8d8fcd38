"""Errors a user can act on. The CLI prints their message as one red line and exits with code 2."""


class LiedetectError(Exception):
    """Base class for every error liedetect raises on purpose."""


class ModelNotFoundError(LiedetectError):
    """A model name or path could not be loaded."""


class LayerError(LiedetectError):
    """A layer or hook point that the model does not have."""


class DataError(LiedetectError):
    """Malformed, empty or otherwise unusable input data."""


class ProbeMismatchError(LiedetectError):
    """A probe applied to a model, layer or hook it was not trained on."""


class CheckpointError(LiedetectError):
    """A missing, wrong or corrupt saved file (activations, checkpoint, probe)."""


class SteeringError(LiedetectError):
    """A steering specification that cannot be applied to this model."""


class OutputPathError(LiedetectError):
    """An output path that would overwrite an input or cannot be written."""


class LockedError(LiedetectError):
    """An output another live process is writing."""


class OptionError(LiedetectError):
    """A command-line option value that cannot be used."""
