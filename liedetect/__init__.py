"""liedetect: read truth directions out of the residual stream, detect lies, steer toward honesty."""

__version__ = "0.1.0"

from liedetect.errors import LiedetectError  # noqa: E402

__all__ = ["__version__", "LiedetectError"]
