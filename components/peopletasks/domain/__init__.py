"""The domain: every state change of tasks, people, tokens and webhooks.

It knows nothing of HTTP, Prefect or mail; routes, the CLI and the Prefect
components are thin callers of it.
"""

from peopletasks.domain.context import Domain
from peopletasks.domain.status import Status

__all__ = ["Domain", "Status"]
