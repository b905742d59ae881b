"""Where a run's hosts come from: EC2 (``aws``) or this machine as a rehearsal (``local``)."""

from __future__ import annotations

from executor.providers.base import CapacityError, Machine, Provider, ProvisionRequest

__all__ = ["CapacityError", "Machine", "Provider", "ProvisionRequest"]
