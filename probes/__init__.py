"""Truth-finding methods: pure math on activation tensors."""

from probes.errors import ProbeError

__all__ = ["ProbeError"]
