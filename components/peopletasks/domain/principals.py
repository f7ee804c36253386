"""Who is calling: API-token users of an organization, and holders of task secrets.

- An API token (`pt_...`) belongs to a user (an e-mail in an organization). Only
  its SHA-256 is stored.
- A task secret belongs to a person in a role (approver or requester) in an
  organization: it is `public_id (16 hex) + MAC (48 hex)`, the MAC made with
  the signing key over the person's public id and generation. The database
  alone does not reveal it, it cannot be guessed from the e-mail, and bumping
  the generation (rotate) revokes it. Older signing keys still verify while
  they are listed.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import and_, bindparam, or_, select

from peopletasks.domain.context import Domain
from peopletasks.domain.values import normalize_email
from peopletasks.errors import NotFound, Unauthorized, ValidationFailed
from peopletasks.signing import sha256_hex
from peopletasks.store.database import Conn, prepared
from peopletasks.store.people import insert_person_if_new
from peopletasks.store.tables import api_tokens, organizations, people, users
from peopletasks.timeutil import utcnow

DEFAULT_ORGANIZATION = "default"
_SECRET_FORM = re.compile(r"^[0-9a-f]{64}$")
_SECRET_PURPOSE = "person-secret"


class Role(StrEnum):
    APPROVER = "approver"
    REQUESTER = "requester"


class PrincipalKind(StrEnum):
    USER = "user"  #: an API token
    APPROVER_SECRET = "approver"  #: an approver secret: read and decide that person's tasks
    REQUESTER_SECRET = "requester"  #: a requester secret: read that person's tasks


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: int
    email: str
    kind: PrincipalKind

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
    domain: Domain, email: str, *, organization: str = DEFAULT_ORGANIZATION, label: str = ""
) -> str:
    """Create (if needed) the user `email` in `organization` and a new API token for it."""
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
                user_id=user_id, token_hash=sha256_hex(token), label=label, created_at=utcnow()
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
                select(users.c.org_id, users.c.email)
                .join(api_tokens, api_tokens.c.user_id == users.c.id)
                .where(api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None))
            )
        ).first()
    if row is None:
        raise Unauthorized("unknown or revoked API token")
    principal = Principal(org_id=row.org_id, email=row.email, kind=PrincipalKind.USER)
    domain.token_cache.put(digest, principal)
    return principal


# -- task secrets -------------------------------------------------------------


def _secret_for(domain: Domain, person: _Person) -> str:
    message = f"{person.public_id}:{person.generation}".encode()
    return person.public_id + domain.signer.sign(_SECRET_PURPOSE, message)[:24].hex()


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


#: A task's approver and requester: `ensure_people`'s common case, prepared (the
#: expanding IN of `_PEOPLE_OF` is compiled on every call).
_TASK_PEOPLE = prepared(
    select(people).where(
        people.c.org_id == bindparam("org_id"),
        or_(
            and_(people.c.email == bindparam("approver"), people.c.role == Role.APPROVER.value),
            and_(people.c.email == bindparam("requester"), people.c.role == Role.REQUESTER.value),
        ),
    )
)
_PERSON_BY_PUBLIC_ID = prepared(select(people).where(people.c.public_id == bindparam("public_id")))


async def _load_people(
    conn: Conn, org_id: int, pairs: set[tuple[str, Role]]
) -> dict[tuple[str, str], _Person]:
    roles = {role: email for email, role in pairs}
    if len(pairs) == 2 and len(roles) == 2:  # a task's approver and requester
        approver, requester = roles[Role.APPROVER], roles[Role.REQUESTER]
        rows = await conn.execute(
            _TASK_PEOPLE, {"org_id": org_id, "approver": approver, "requester": requester}
        )
    else:
        emails = sorted({email for email, _ in pairs})
        rows = await conn.execute(_PEOPLE_OF, {"org_id": org_id, "emails": emails})
    out: dict[tuple[str, str], _Person] = {}
    for row in rows:
        person = _Person(row.id, row.public_id, row.org_id, row.email, row.role, row.generation)
        if (row.email, Role(row.role)) in pairs:
            out[(row.email, row.role)] = person
    return out


async def issue_secrets(
    domain: Domain, conn: Conn, org_id: int, approver: str, requester: str
) -> tuple[str, str]:
    """The current approver and requester secrets of a task's two people.

    Remembered as long as verified secrets are (`auth_cache_seconds`): a rotation on
    another replica reaches this one's new tasks within that time, as it reaches
    its secret checks.
    """
    cache = domain.secrets_cache
    approver_key = (org_id, approver, Role.APPROVER.value)
    requester_key = (org_id, requester, Role.REQUESTER.value)
    approver_secret, requester_secret = cache.get(approver_key), cache.get(requester_key)
    if approver_secret is None or requester_secret is None:
        found = await ensure_people(
            conn, org_id, [(approver, Role.APPROVER), (requester, Role.REQUESTER)]
        )
        approver_secret = _secret_for(domain, found[approver_key[1:]])
        requester_secret = _secret_for(domain, found[requester_key[1:]])
        cache.put(approver_key, approver_secret)
        cache.put(requester_key, requester_secret)
    return approver_secret, requester_secret


async def rotate_secret(
    domain: Domain, email: str, role: Role, *, organization: str = DEFAULT_ORGANIZATION
) -> str:
    """Revoke a person's secret and return the new one (every old one stops working)."""
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


async def authenticate_secret(domain: Domain, secret: str) -> Principal:
    """The holder of a task secret. A verified secret is remembered as long as API
    tokens are (`auth_cache_seconds`): a rotation on another replica reaches this one
    within that time; on this one, at once."""
    secret = secret.strip().lower()
    known = domain.secret_holders.get(secret)
    if isinstance(known, Principal):
        return known
    if not _SECRET_FORM.match(secret):
        raise Unauthorized("unknown or revoked secret")
    public_id, mac = secret[:16], bytes.fromhex(secret[16:])
    async with domain.db.read() as conn:
        row = (await conn.execute(_PERSON_BY_PUBLIC_ID, {"public_id": public_id})).first()
    if row is None:
        raise Unauthorized("unknown or revoked secret")
    message = f"{row.public_id}:{row.generation}".encode()
    if not domain.signer.verify(_SECRET_PURPOSE, message, mac):
        raise Unauthorized("unknown or revoked secret")
    principal = Principal(org_id=row.org_id, email=row.email, kind=PrincipalKind(row.role))
    domain.secret_holders.put(secret, principal)
    return principal
