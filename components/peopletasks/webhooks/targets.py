"""Where webhooks may point: checked at registration (and again at every connection)."""

from __future__ import annotations

from peopletasks.domain.webhooks import TargetCheck
from peopletasks.errors import ValidationFailed
from peopletasks.webhooks.transport import check_target_resolves, check_target_url


def target_check(*, allow_private: bool) -> TargetCheck:
    """An http(s) URL whose host resolves to public addresses only (unless allowed)."""

    async def check(url: str, field: str) -> None:
        try:
            check_target_url(url)
            await check_target_resolves(url, allow_private=allow_private)
        except ValidationFailed as exc:
            message = exc.details[0]["message"] if exc.details else exc.message
            raise ValidationFailed.field(field, message) from None

    return check
