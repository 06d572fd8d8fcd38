"""Known-broken combinations of upstream releases, refused with a sentence instead of silent garbage."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Optional

from packaging.version import Version

from liedetect.errors import LiedetectError


class IncompatibleVersionsError(LiedetectError):
    """Installed upstream releases that are known to give wrong results together."""


def _installed(name: str) -> Optional[Version]:
    try:
        return Version(version(name))
    except PackageNotFoundError:
        return None


def kv_cache_problem(transformers_version: Optional[str] = None, lens_version: Optional[str] = None) -> Optional[str]:
    """The sentence explaining why KV-cache generation is broken with these releases, or None when it is not."""
    tf = Version(transformers_version) if transformers_version else _installed("transformers")
    tl = Version(lens_version) if lens_version else _installed("transformer-lens")
    if tf is None or tl is None:
        return None
    # Measured: transformers 5.24.0 + transformer-lens 4.3.0 gives wrong logits from the second new token
    # on (max |diff| 0.22-0.36 against a full re-forward); 5.23.0 is exact. No newer lens release is known.
    if tf >= Version("5.24.0") and tl <= Version("4.3.0"):
        return (f"transformers {tf} with transformer-lens {tl} generates wrong tokens when the KV cache is used "
                f"(known bug); install the locked versions (`make setup`) or `pip install 'transformers<5.24'`.")
    return None


def check_generation_versions() -> None:
    """Raise IncompatibleVersionsError when the installed releases are known to break cached generation."""
    problem = kv_cache_problem()
    if problem:
        raise IncompatibleVersionsError(problem)
