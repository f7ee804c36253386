"""Who is calling, and what proves it.

- An API token (`pt_...`) belongs to a user (an e-mail in an organization). Only
  its SHA-256 is stored. A token sees the tasks its user created, approves or
  requests; an admin token (`token create --admin`) the whole organization.
- A task secret (`approverSecret`, `requesterSecret`) proves one role on one task:
  the task's id and a MAC, made with the signing key, over the id, the role and that
  role's person. It reads that task (the approver's also decides it) and nothing
  else; when the task gets another approver, the old approver's secret stops
  working. Nothing is stored; older signing keys still verify while listed.
- A dashboard token (`pd_...`) proves a person: it is sent only to that person's
  address (in the mail the service sends), expires, and shows their tasks as
  approver and requester. It is never handed to whoever creates a task.
- Person-wide secrets (Appmixer's semantics: one approver secret reads and decides
  all of that person's tasks) exist only where `PEOPLETASKS_PERSON_SECRETS=true`:
  anyone who may create a task naming a person then receives a secret that decides
  that person's other tasks. Off by default (see docs/api.md).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import bindparam, select

from peopletasks.domain.approvers import emails_of
from peopletasks.domain.context import Domain
from peopletasks.domain.values import normalize_email
from peopletasks.errors import NotFound, Unauthorized, ValidationFailed
from peopletasks.signing import sha256_hex
from peopletasks.store import tasks as stored_tasks
from peopletasks.store.database import Conn, prepared
from peopletasks.store.people import insert_person_if_new
from peopletasks.store.tables import api_tokens, organizations, people, users
from peopletasks.timeutil import utcnow

DEFAULT_ORGANIZATION = "default"
_SECRET_FORM = re.compile(r"^[0-9a-f]{64}$")
_PERSON_SECRET_PURPOSE = "person-secret"
_TASK_SECRET_PURPOSE = "task-secret"
_DASHBOARD_PURPOSE = "dashboard"
_DASHBOARD_PREFIX = "pd_"
#: A dashboard token: organization, expiry (Unix seconds), then the person's address.
_DASHBOARD_LAYOUT = struct.Struct(">II")
_DASHBOARD_MAC = 16


class Role(StrEnum):
    APPROVER = "approver"
    REQUESTER = "requester"


class PrincipalKind(StrEnum):
    USER = "user"  #: an API token
    APPROVER_SECRET = "approver"  #: read and decide a task as its approver
    REQUESTER_SECRET = "requester"  #: read a task as its requester
    PERSON = "person"  #: a dashboard token: a person's tasks, as approver and requester


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: int
    email: str
    kind: PrincipalKind
    #: A task secret's task (None: a person-wide secret, or not a secret).
    task_id: str | None = None
    #: An admin token: the whole organization.
    admin: bool = False

    @property
    def is_user(self) -> bool:
        return self.kind is PrincipalKind.USER


@dataclass(frozen=True, slots=True)
class _Person:
    id: int
    public_id: str
    org_id: int
    email: str
    role: str
    generation: int


# -- API tokens ---------------------------------------------------------------


async def ensure_organization(conn: Conn, name: str) -> int:
    org_id = await conn.scalar(select(organizations.c.id).where(organizations.c.name == name))
    if org_id is None:
        org_id = (
            await conn.execute(
                organizations.insert()
                .values(name=name, created_at=utcnow())
                .returning(organizations.c.id)
            )
        ).scalar_one()
    return int(org_id)


async def create_api_token(
    domain: Domain,
    email: str,
    *,
    organization: str = DEFAULT_ORGANIZATION,
    label: str = "",
    admin: bool = False,
) -> str:
    """Create (if needed) the user `email` in `organization` and a new API token for it;
    `admin`: the token sees and manages every task of the organization."""
    try:
        email = normalize_email(email)
    except ValueError as exc:
        raise ValidationFailed.field("email", str(exc)) from None
    token = "pt_" + secrets.token_urlsafe(32)
    async with domain.db.write() as conn:
        org_id = await ensure_organization(conn, organization)
        user_id = await conn.scalar(
            select(users.c.id).where(users.c.org_id == org_id, users.c.email == email)
        )
        if user_id is None:
            user_id = (
                await conn.execute(
                    users.insert()
                    .values(org_id=org_id, email=email, created_at=utcnow())
                    .returning(users.c.id)
                )
            ).scalar_one()
        await conn.execute(
            api_tokens.insert().values(
                user_id=user_id,
                token_hash=sha256_hex(token),
                label=label,
                admin=admin,
                created_at=utcnow(),
            )
        )
    return token


async def revoke_api_token(domain: Domain, token: str) -> None:
    digest = sha256_hex(token)
    async with domain.db.write() as conn:
        result = await conn.execute(
            api_tokens.update()
            .where(api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    domain.token_cache.clear()
    if result.rowcount == 0:
        raise NotFound("no such active token")


async def authenticate_token(domain: Domain, token: str) -> Principal:
    digest = sha256_hex(token)
    cached = domain.token_cache.get(digest)
    if isinstance(cached, Principal):
        return cached
    async with domain.db.read() as conn:
        row = (
            await conn.execute(
                select(users.c.org_id, users.c.email, api_tokens.c.admin)
                .join(api_tokens, api_tokens.c.user_id == users.c.id)
                .where(api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None))
            )
        ).first()
    if row is None:
        raise Unauthorized("unknown or revoked API token")
    principal = Principal(
        org_id=row.org_id, email=row.email, kind=PrincipalKind.USER, admin=bool(row.admin)
    )
    domain.token_cache.put(digest, principal)
    return principal


# -- task secrets ----------------------------------------------------------------


def task_secret(domain: Domain, task_id: str, role: Role, email: str) -> str:
    """The secret of `email` in `role` on task `task_id` (64 hex: the id, then a MAC)."""
    message = f"{task_id}:{role.value}:{email}".encode()
    return task_id + domain.signer.sign(_TASK_SECRET_PURPOSE, message)[:20].hex()


async def task_secrets(
    domain: Domain, conn: Conn, org_id: int, task_id: str, approvers: list[str], requester: str
) -> tuple[dict[str, str], str]:
    """A task's secrets: each approver's (by address) and the requester's; its own, or,
    with person-wide secrets on, the people's (created when new)."""
    if domain.person_secrets:
        return await _person_secrets(domain, conn, org_id, approvers, requester)
    return (
        {email: task_secret(domain, task_id, Role.APPROVER, email) for email in approvers},
        task_secret(domain, task_id, Role.REQUESTER, requester),
    )


async def authenticate_secret(domain: Domain, secret: str) -> Principal:
    """The holder of a task secret (or of a dashboard token, or, where they are on, of a
    person-wide secret). A verified secret is remembered as long as API tokens are
    (`auth_cache_seconds`): what it may do is judged on every request against the task
    as it stands (`rules`), so a secret whose person is no longer the task's is refused
    at once."""
    secret = secret.strip()
    if secret.startswith(_DASHBOARD_PREFIX):
        return authenticate_dashboard_token(domain, secret)
    secret = secret.lower()
    known = domain.secret_holders.get(secret)
    if isinstance(known, Principal):
        return known
    if not _SECRET_FORM.match(secret):
        raise Unauthorized("unknown or revoked secret")
    principal = await _task_secret_holder(domain, secret)
    if principal is None and domain.person_secrets:
        principal = await _person_secret_holder(domain, secret)
    if principal is None:
        raise Unauthorized("unknown or revoked secret")
    domain.secret_holders.put(secret, principal)
    return principal


async def _task_secret_holder(domain: Domain, secret: str) -> Principal | None:
    task_id, mac = secret[:24], bytes.fromhex(secret[24:])
    async with domain.db.read() as conn:
        row = await stored_tasks.task_people(conn, task_id)
    if row is None:
        return None
    holders = [(Role.APPROVER, PrincipalKind.APPROVER_SECRET, e) for e in emails_of(row)]
    for role, kind, email in [
        *holders,
        (Role.REQUESTER, PrincipalKind.REQUESTER_SECRET, row.requester),
    ]:
        message = f"{task_id}:{role.value}:{email}".encode()
        if domain.signer.verify(_TASK_SECRET_PURPOSE, message, mac):
            return Principal(org_id=row.org_id, email=email, kind=kind, task_id=task_id)
    return None


# -- dashboard tokens --------------------------------------------------------------


def dashboard_token(domain: Domain, org_id: int, email: str, expires_at: datetime) -> str:
    """A token proving `email` (of organization `org_id`) until `expires_at`: for a link
    sent to that address only."""
    payload = _DASHBOARD_LAYOUT.pack(org_id, int(expires_at.timestamp())) + email.encode()
    mac = domain.signer.sign(_DASHBOARD_PURPOSE, payload)[:_DASHBOARD_MAC]
    return _DASHBOARD_PREFIX + base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def authenticate_dashboard_token(domain: Domain, token: str) -> Principal:
    refused = Unauthorized("unknown or expired dashboard link")
    encoded = token[len(_DASHBOARD_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise refused from None
    mac, payload = raw[:_DASHBOARD_MAC], raw[_DASHBOARD_MAC:]
    if len(payload) <= _DASHBOARD_LAYOUT.size or not domain.signer.verify(
        _DASHBOARD_PURPOSE, payload, mac
    ):
        raise refused
    org_id, expires = _DASHBOARD_LAYOUT.unpack(payload[: _DASHBOARD_LAYOUT.size])
    if datetime.fromtimestamp(expires, UTC) <= utcnow():
        raise refused
    email = payload[_DASHBOARD_LAYOUT.size :].decode("utf-8", "replace")
    return Principal(org_id=org_id, email=email, kind=PrincipalKind.PERSON)


# -- person-wide secrets (Appmixer's semantics; off unless PEOPLETASKS_PERSON_SECRETS) ------


def _secret_for(domain: Domain, person: _Person) -> str:
    message = f"{person.public_id}:{person.generation}".encode()
    return person.public_id + domain.signer.sign(_PERSON_SECRET_PURPOSE, message)[:24].hex()


async def ensure_people(
    conn: Conn, org_id: int, wanted: list[tuple[str, Role]]
) -> dict[tuple[str, str], _Person]:
    """The secret holders for (email, role) pairs, created when new."""
    pairs = set(wanted)
    found = await _load_people(conn, org_id, pairs)
    missing = pairs - found.keys()
    if missing:
        now = utcnow()
        for email, role in sorted(missing):
            await insert_person_if_new(
                conn,
                {
                    "public_id": secrets.token_hex(8),
                    "org_id": org_id,
                    "email": email,
                    "role": role.value,
                    "generation": 0,
                    "created_at": now,
                },
            )
        found = await _load_people(conn, org_id, pairs)
    return found


# Statements built once (values bound per call): building them per call, with their
# values inside, cost more CPU than running them.
_PEOPLE_OF = select(people).where(
    people.c.org_id == bindparam("org_id"),
    people.c.email.in_(bindparam("emails", expanding=True)),
)


_PERSON_BY_PUBLIC_ID = prepared(select(people).where(people.c.public_id == bindparam("public_id")))


async def _load_people(
    conn: Conn, org_id: int, pairs: set[tuple[str, Role]]
) -> dict[tuple[str, str], _Person]:
    emails = sorted({email for email, _ in pairs})
    rows = await conn.execute(_PEOPLE_OF, {"org_id": org_id, "emails": emails})
    out: dict[tuple[str, str], _Person] = {}
    for row in rows:
        person = _Person(row.id, row.public_id, row.org_id, row.email, row.role, row.generation)
        if (row.email, Role(row.role)) in pairs:
            out[(row.email, row.role)] = person
    return out


async def _person_secrets(
    domain: Domain, conn: Conn, org_id: int, approvers: list[str], requester: str
) -> tuple[dict[str, str], str]:
    """The current person-wide secrets of a task's approvers and requester.

    Remembered as long as verified secrets are (`auth_cache_seconds`): a rotation on
    another replica reaches this one's new tasks within that time, as it reaches
    its secret checks.
    """
    wanted = [(email, Role.APPROVER) for email in approvers] + [(requester, Role.REQUESTER)]
    cache = domain.secrets_cache
    known = {pair: cache.get((org_id, pair[0], pair[1].value)) for pair in wanted}
    missing = [pair for pair, secret in known.items() if secret is None]
    if missing:
        found = await ensure_people(conn, org_id, missing)
        for email, role in missing:
            secret = _secret_for(domain, found[(email, role.value)])
            known[(email, role)] = secret
            cache.put((org_id, email, role.value), secret)
    by_approver = {email: str(known[(email, Role.APPROVER)]) for email in approvers}
    return by_approver, str(known[(requester, Role.REQUESTER)])


async def rotate_secret(
    domain: Domain, email: str, role: Role, *, organization: str = DEFAULT_ORGANIZATION
) -> str:
    """Revoke a person's person-wide secret and return the new one (every old one stops
    working). Task secrets are bound to their task and its people: nothing to rotate."""
    if not domain.person_secrets:
        raise ValidationFailed(
            "person-wide secrets are off (PEOPLETASKS_PERSON_SECRETS): each task secret is "
            "bound to its task and its approver or requester, so there is none to rotate",
            code="person_secrets_off",
        )
    email = normalize_email(email)
    async with domain.db.write() as conn:
        org_id = await ensure_organization(conn, organization)
        found = await ensure_people(conn, org_id, [(email, role)])
        person = found[(email, role.value)]
        await conn.execute(
            people.update()
            .where(people.c.id == person.id)
            .values(generation=people.c.generation + 1, rotated_at=utcnow())
        )
        generation = await conn.scalar(select(people.c.generation).where(people.c.id == person.id))
    domain.secret_holders.clear()
    domain.secrets_cache.clear()
    rotated = _Person(
        person.id, person.public_id, person.org_id, email, role.value, int(generation or 0)
    )
    return _secret_for(domain, rotated)


async def _person_secret_holder(domain: Domain, secret: str) -> Principal | None:
    public_id, mac = secret[:16], bytes.fromhex(secret[16:])
    async with domain.db.read() as conn:
        row = (await conn.execute(_PERSON_BY_PUBLIC_ID, {"public_id": public_id})).first()
    if row is None:
        return None
    message = f"{row.public_id}:{row.generation}".encode()
    if not domain.signer.verify(_PERSON_SECRET_PURPOSE, message, mac):
        return None
    return Principal(org_id=row.org_id, email=row.email, kind=PrincipalKind(row.role))
