"""Where webhooks may point: checked at registration (and again at every connection)."""

from __future__ import annotations

from collections.abc import Iterable

from peopletasks.domain.webhooks import TargetCheck
from peopletasks.errors import ValidationFailed
from peopletasks.webhooks.transport import check_target_resolves, check_target_url


def target_check(*, allow_private: bool, prefect_apis: Iterable[str] = ()) -> TargetCheck:
    """An http(s) URL whose host resolves to public addresses only (unless allowed), or,
    for a Prefect resume (`prefect.apiUrl`), one of the Prefect APIs the operator named
    (PEOPLETASKS_PREFECT_API_URL), wherever it is."""
    named = tuple(check_target_url(url).rstrip("/") for url in prefect_apis)

    async def check(url: str, field: str) -> None:
        try:
            normalised = check_target_url(url).rstrip("/")
            if field == "prefect.apiUrl" and normalised in named:
                return
            await check_target_resolves(url, allow_private=allow_private)
        except ValidationFailed as exc:
            message = exc.details[0]["message"] if exc.details else exc.message
            if field == "prefect.apiUrl":
                message += (
                    "; to resume flow runs on your own Prefect server, name its API in "
                    "PEOPLETASKS_PREFECT_API_URL (e.g. http://prefect:4200/api)"
                )
            raise ValidationFailed.field(field, message) from None

    return check
