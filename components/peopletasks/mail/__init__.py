"""Approval e-mails: render (Jinja2, HTML + text), send (aiosmtplib), and a local dev inbox.

```python
from peopletasks.mail import Mailer, SmtpConfig, render_approval_request

message = render_approval_request(task, approve_url=..., reject_url=..., sender=..., to=...)
async with Mailer(SmtpConfig.from_env()) as mailer:
    await mailer.send(message)
```

The inbox (`peopletasks.mail.inbox`) is imported on its own: it pulls in aiosmtpd,
Starlette and uvicorn, which senders do not need.
"""

from peopletasks.mail.render import (
    make_environment,
    message_id_for,
    render_approval_request,
    render_requester_copy,
)
from peopletasks.mail.send import Delivery, MailDeliveryError, Mailer, SmtpConfig, send_message
from peopletasks.settings import Branding

__all__ = [
    "Branding",
    "Delivery",
    "MailDeliveryError",
    "Mailer",
    "SmtpConfig",
    "make_environment",
    "message_id_for",
    "render_approval_request",
    "render_requester_copy",
    "send_message",
]
