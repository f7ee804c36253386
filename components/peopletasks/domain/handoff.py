"""Fresh webhook deliveries handed from a committing change to this process's dispatcher.

When this process runs a dispatcher with room (`Domain.handoff`), a change's
deliveries are written already claimed by it (a lease, as a claim would) and handed
to it the moment the transaction commits, so no claim query stands between a
decision and its webhooks. Should the process die first, the lease expires and any
dispatcher attempts them: nothing is lost either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """What a dispatcher needs to make one attempt."""

    id: int
    attempt: int  #: 1 for the first attempt
    message_id: str  #: `webhook-id`: the same on every attempt
    event_type: str
    body: str
    event_created_at: datetime
    webhook_id: int
    webhook_public_id: str
    kind: str  #: http | prefect
    url: str
    target: dict[str, Any] | None
    key_id: str | None


class Handoff(Protocol):
    """A dispatcher in this process that takes fresh deliveries straight from commit."""

    @property
    def lease_seconds(self) -> float:
        """How long a handed-over delivery stays claimed."""
        ...

    def room(self) -> int:
        """How many more deliveries it would start now."""
        ...

    def take(self, deliveries: list[ClaimedDelivery]) -> None:
        """Start these (already claimed) deliveries."""
        ...
