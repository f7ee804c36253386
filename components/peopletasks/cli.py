"""The `peopletasks` command: thin over the domain and the service."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import click

from peopletasks import __version__
from peopletasks.errors import PeopleTaskError, StoreUnavailable
from peopletasks.settings import ConfigurationError, get_settings

T = TypeVar("T")


def _run_domain(operation: Callable[[Any], Awaitable[T]]) -> T:
    """Migrate, then run one domain operation against the configured store."""
    from peopletasks.service.app import build_domain
    from peopletasks.store import migrate

    settings = get_settings()

    async def main() -> T:
        domain = build_domain(settings)
        try:
            return await operation(domain)
        finally:
            await domain.db.dispose()

    try:
        migrate(settings.database_url)
        return asyncio.run(main())
    except (PeopleTaskError, ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(__version__, prog_name="peopletasks")
def main() -> None:
    """peopletasks: human approval steps for Prefect."""


def app_factory() -> Any:
    """The ASGI app as uvicorn's factory builds it in each worker process."""
    from peopletasks.service import create_app
    from peopletasks.service.logging import install_access_log_redaction

    install_access_log_redaction()
    return create_app()


#: How long a connection may take to send a request's header (see service/server.py).
HEADER_TIMEOUT_SECONDS = 20.0
#: Longer than common proxies' idle timeouts (60 s), so that the client side closes
#: idle connections first and never reuses one we are closing.
KEEP_ALIVE_TIMEOUT_SECONDS = 65


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes (PostgreSQL only: a SQLite store is served by one process).",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--header-timeout",
    default=HEADER_TIMEOUT_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a connection has to send a request's header (then 408, closed).",
)
@click.option(
    "--keep-alive-timeout",
    default=KEEP_ALIVE_TIMEOUT_SECONDS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seconds an idle kept-alive connection stays open.",
)
def serve(
    host: str,
    port: int,
    workers: int,
    access_log: bool,
    header_timeout: float,
    keep_alive_timeout: int,
) -> None:
    """Run the People Task service (migrates the store first)."""
    import uvicorn

    from peopletasks.service.server import protocol
    from peopletasks.settings import Branding

    settings = get_settings()
    try:
        settings.signing_keys()
        Branding.from_env()  # the dashboard's brand: refused here, in one line
    except (ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if workers > 1 and settings.is_sqlite:
        raise click.ClickException(
            f"--workers {workers}: a SQLite store is served by one process (its one writer,"
            " the webhook dispatcher's leases and the deadline scheduler assume one process"
            " per file); serve it with one worker, or use PostgreSQL for several"
        )
    _migrate(settings.database_url)
    http: Literal["httptools", "h11"] = (
        "httptools" if importlib.util.find_spec("httptools") else "h11"
    )
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    click.echo(f"peopletasks {__version__}: store {_safe_url(settings.database_url)}", err=True)
    click.echo(f"peopletasks: mail {_mail(settings)}", err=True)
    uvicorn.run(
        "peopletasks.cli:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop=loop,
        http=protocol(http, header_timeout),
        access_log=access_log,
        server_header=False,
        timeout_keep_alive=keep_alive_timeout,
    )


def _mail(settings: Any) -> str:
    """How the service sends mail (one line), or exit with what is wrong in PEOPLETASKS_SMTP_*."""
    from peopletasks.mail.dispatcher import describe
    from peopletasks.service.workers import smtp_config

    try:
        return describe(smtp_config(settings))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _migrate(url: str) -> None:
    """Migrate the store; one line (which store, why) and exit 1 if it cannot be opened."""
    from peopletasks.store import migrate

    try:
        migrate(url)
    except StoreUnavailable as exc:
        raise click.ClickException(exc.message) from None


@main.command()
@click.option("--smtp-port", default=1025, show_default=True, type=int)
@click.option("--web-port", default=8025, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--folder", default=None, help="Also keep each message as a .eml file here.")
def inbox(smtp_port: int, web_port: int, host: str, folder: str | None) -> None:
    """A local mail inbox for development: an SMTP server and a page to read the mail.

    Point the mailer at it with PEOPLETASKS_SMTP_HOST=127.0.0.1 PEOPLETASKS_SMTP_PORT=1025.
    """
    from peopletasks.mail.inbox import serve_inbox

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_inbox(smtp_port, web_port, folder, host=host))


@main.command()
@click.option("--auto-approve", is_flag=True, help="Play the approver through the mail's link.")
@click.option("--keep", is_flag=True, help="Keep the demo's temporary folder.")
def demo(auto_approve: bool, keep: bool) -> None:
    """The whole loop on this machine: service, local inbox, and a Prefect flow that asks
    for an approval by e-mail and waits for your click."""
    from peopletasks.demo import run_demo

    raise SystemExit(run_demo(auto_approve=auto_approve, keep=keep))


@main.command("migrate")
def migrate_command() -> None:
    """Bring the store to the newest schema."""
    settings = get_settings()
    _migrate(settings.database_url)
    click.echo(f"migrated {_safe_url(settings.database_url)}")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--org", "organization", default="default", show_default=True)
@click.option("--label", default="", help="A note to recognise the token by.")
@click.option(
    "--admin",
    is_flag=True,
    help="See and manage every task of the organization (else: the user's own tasks).",
)
def token_create(email: str, organization: str, label: str, admin: bool) -> None:
    """Print a new API token for user EMAIL (the last line of stdout)."""
    from peopletasks.domain.principals import create_api_token

    value = _run_domain(
        lambda domain: create_api_token(
            domain, email, organization=organization, label=label, admin=admin
        )
    )
    click.echo(value)


@token.command("revoke")
@click.argument("value")
def token_revoke(value: str) -> None:
    """Revoke an API token."""
    from peopletasks.domain.principals import revoke_api_token

    _run_domain(lambda domain: revoke_api_token(domain, value))
    click.echo("revoked")


@main.group()
def secret() -> None:
    """Task secrets of approvers and requesters."""


@secret.command("rotate")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["approver", "requester"]), required=True)
@click.option("--org", "organization", default="default", show_default=True)
def secret_rotate(email: str, role: str, organization: str) -> None:
    """Revoke a person's secret in a role; print the new one (the last line of stdout)."""
    from peopletasks.domain.principals import Role, rotate_secret

    value = _run_domain(
        lambda domain: rotate_secret(domain, email, Role(role), organization=organization)
    )
    click.echo(value)


@main.group()
def dashboard() -> None:
    """The people's dashboard."""


@dashboard.command("link")
@click.option("--email", required=True, help="The person whose tasks it shows.")
@click.option("--org", "organization", default="default", show_default=True)
@click.option("--days", type=click.IntRange(1, 90), default=7, show_default=True)
def dashboard_link(email: str, organization: str, days: int) -> None:
    """Print a link that opens EMAIL's dashboard for DAYS days (the last line of stdout).
    It shows and decides all of their tasks: send it to that address only."""
    from datetime import timedelta

    from peopletasks.domain.dashboard import person_dashboard_link

    value = _run_domain(
        lambda domain: person_dashboard_link(domain, email, organization, timedelta(days=days))
    )
    click.echo(value)


if __name__ == "__main__":  # pragma: no cover
    main()
