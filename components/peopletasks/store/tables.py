"""The tables of the service store (SQLAlchemy Core).

Tasks carry both the Appmixer People Task fields and room for what the
Peoplelogic and Plannr task models hold (several approvers with a decision rule,
assignees, notes, priority, position / order group, custom fields, the entity
the task is about, parent task, external mappings).

A task row holds everything its view shows (lists as JSON, already in the API's
shape), so rendering a task is one row read: lists, webhook bodies and pages need
no joins. Side tables that mirror a JSON list (`task_assignees`) exist to be
searched with an index; the domain writes both in one transaction.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from peopletasks.store.types import BigIntPK, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

EMAIL = String(320)
PUBLIC_ID = String(24)

organizations = Table(
    "organizations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organizations.id"), nullable=False),
    Column("email", EMAIL, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "email", name="uq_users_org_email"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False, index=True),
    # SHA-256 of the token: the token itself is never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=False, server_default=""),
    # Sees and manages every task of the organization (else: its user's own).
    Column("admin", Boolean, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

# One row per secret holder (an e-mail in a role, in an organization). Their
# secret is derived from `public_id` and `generation` with the signing key:
# nothing in the database reveals it; bumping `generation` revokes it.
people = Table(
    "people",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(16), nullable=False, unique=True),
    Column("org_id", ForeignKey("organizations.id"), nullable=False),
    Column("email", EMAIL, nullable=False),
    Column("role", String(16), nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime),
    UniqueConstraint("org_id", "email", "role", name="uq_people_org_email_role"),
)

#: The deadline scheduler's index: the deadlines of pending tasks only. A query
#: must state its condition, as written here, for the index to serve it.
PENDING_DEADLINE_INDEX = "ix_tasks_pending_deadline"
PENDING_ONLY = "status = 'pending'"
#: The scheduler's indexes of reminders and escalations still to come (pending tasks
#: that have one only); as with deadlines, a query states these conditions.
PENDING_REMINDER_INDEX = "ix_tasks_pending_reminder"
PENDING_REMINDER_ONLY = "status = 'pending' AND next_reminder_at IS NOT NULL"
PENDING_ESCALATION_INDEX = "ix_tasks_pending_escalation"
PENDING_ESCALATION_ONLY = "status = 'pending' AND escalate_at IS NOT NULL"

tasks = Table(
    "tasks",
    metadata,
    # Creation order: the tie-breaker of every sort, so paging is stable.
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("id", PUBLIC_ID, nullable=False, unique=True),
    Column("org_id", ForeignKey("organizations.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    # Addresses as keys (lower-cased: what compares, filters and is indexed), and each
    # as it was given where its case differs (null otherwise): what the task shows.
    Column("requester", EMAIL, nullable=False),
    Column("approver", EMAIL, nullable=False),
    Column("requester_given", EMAIL),
    Column("approver_given", EMAIL),
    Column("status", String(16), nullable=False),
    Column("decision_by", UTCDateTime),
    Column("allow_late_decision", Boolean, nullable=False, server_default="0"),
    Column("public", Boolean, nullable=False, server_default="1"),
    # How the approvers' responses decide: any | all | quorum (with `quorum`) | sequential.
    Column("decision_rule", String(16), nullable=False, server_default="any"),
    Column("quorum", Integer),
    # With several approvers: [{"email", "status", "respondedAt", "comment", "option",
    # "data"}] in order (null: one approver, `approver`, whose state is the task's).
    Column("approvers", JSON),
    # Custom responses [{"key", "label", "outcome"}] (null: approve and reject), and a
    # form (a JSON Schema object) the approver fills.
    Column("options", JSON),
    Column("form", JSON),
    Column("allow_self_approval", Boolean, nullable=False, server_default="0"),
    # The response that decided the task: its option's key and its form data.
    Column("option", String(64)),
    Column("decision_data", JSON),
    Column("priority", String(16)),
    Column("position", Integer),
    Column("order_group", String(64)),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("connected_type", String(64)),
    Column("connected_id", String(128)),
    Column("parent_id", PUBLIC_ID),
    # {key: {"type", "value", "name"?}}, in the order given.
    Column("custom_fields", JSON),
    # [{"type", "id"}]: the view's copy of task_assignees.
    Column("assignees", JSON),
    # [{"app", "namespace", "mappedId", "reference"?, "mappingData"?}]
    Column("mappings", JSON),
    # [{"from", "to", "changedAt", "changedBy"}]: every status change, oldest first
    # (appended by the UPDATE that changes the status).
    Column("status_history", JSON),
    # [{"changedAt", "changedBy", "changes": {field: {"from", "to"}}}]: every edit of the
    # task's fields, oldest first.
    Column("change_log", JSON),
    Column("notes_count", Integer, nullable=False, server_default="0"),
    Column("created_by", EMAIL),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("decided_by", EMAIL),
    Column("decided_at", UTCDateTime),
    Column("comment", Text),
    # The caller's idempotency key: creating twice with one key gives one task.
    Column("request_key", String(200)),
    # What the service does while the task waits (issue 16): how it tells people
    # (["email"] or none), reminders and escalation as given, and their schedule.
    Column("notify", JSON),
    Column("reminders", JSON),
    Column("escalation", JSON),
    Column("next_reminder_at", UTCDateTime),
    Column("reminders_sent", Integer, nullable=False, server_default="0"),
    Column("escalate_at", UTCDateTime),
    Column("escalated_at", UTCDateTime),
    # The approver asked for, when a standing delegation chose `approver` instead.
    Column("delegated_from", EMAIL),
    # [{"from", "to", "reassignedAt", "reassignedBy", "comment", "reason"}], oldest first.
    Column("reassignments", JSON),
    Column("decided_by_system", Boolean, nullable=False, server_default="0"),
    Index(
        "uq_tasks_org_request_key",
        "org_id",
        "request_key",
        unique=True,
        sqlite_where=text("request_key IS NOT NULL"),
        postgresql_where=text("request_key IS NOT NULL"),
    ),
    # A person's list in one role, by status and deadline (the inbox query).
    Index("ix_tasks_org_approver_status", "org_id", "approver", "status", "decision_by"),
    Index("ix_tasks_org_requester_status", "org_id", "requester", "status", "decision_by"),
    Index("ix_tasks_org_creator_status", "org_id", "created_by", "status", "decision_by"),
    # The deadline scheduler's: pending tasks only (a decision drops the entry).
    Index(
        PENDING_DEADLINE_INDEX,
        "decision_by",
        sqlite_where=text(PENDING_ONLY),
        postgresql_where=text(PENDING_ONLY),
    ),
    Index(
        PENDING_REMINDER_INDEX,
        "next_reminder_at",
        sqlite_where=text(PENDING_REMINDER_ONLY),
        postgresql_where=text(PENDING_REMINDER_ONLY),
    ),
    Index(
        PENDING_ESCALATION_INDEX,
        "escalate_at",
        sqlite_where=text(PENDING_ESCALATION_ONLY),
        postgresql_where=text(PENDING_ESCALATION_ONLY),
    ),
    # Filters that stand on their own: the entity a task is about, a parent's children
    # (of the tasks that have one: most have none, and an entry costs every insert).
    Index(
        "ix_tasks_org_connected",
        "org_id",
        "connected_id",
        "connected_type",
        sqlite_where=text("connected_id IS NOT NULL"),
        postgresql_where=text("connected_id IS NOT NULL"),
    ),
    Index(
        "ix_tasks_parent_id",
        "parent_id",
        sqlite_where=text("parent_id IS NOT NULL"),
        postgresql_where=text("parent_id IS NOT NULL"),
    ),
)

# The approvers of a task with several (their state is the row's `approvers`): what a
# person's list searches to find the tasks they approve second or third.
task_approvers = Table(
    "task_approvers",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("task_seq", ForeignKey("tasks.seq", ondelete="CASCADE"), nullable=False),
    Column("email", EMAIL, nullable=False),
    Column("position", Integer, nullable=False, server_default="0"),
    UniqueConstraint("task_seq", "email", name="uq_task_approvers_task_email"),
    Index("ix_task_approvers_email", "email", "task_seq"),
)

task_assignees = Table(
    "task_assignees",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("task_seq", ForeignKey("tasks.seq", ondelete="CASCADE"), nullable=False, index=True),
    Column("entity_type", String(64), nullable=False),
    Column("entity_id", String(320), nullable=False),
    Column("position", Integer, nullable=False, server_default="0"),
    # `filter=assignee:<id>`: the tasks with that assignee.
    Index("ix_task_assignees_entity", "entity_id", "task_seq"),
)

task_notes = Table(
    "task_notes",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("public_id", PUBLIC_ID, nullable=False, unique=True),
    Column("task_seq", ForeignKey("tasks.seq", ondelete="CASCADE"), nullable=False, index=True),
    Column("note", Text, nullable=False),
    Column("author", EMAIL),
    Column("created_at", UTCDateTime, nullable=False),
)

task_mappings = Table(
    "task_mappings",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("task_seq", ForeignKey("tasks.seq", ondelete="CASCADE"), nullable=False, index=True),
    Column("app", String(200), nullable=False),
    Column("namespace", String(200), nullable=False, server_default=""),
    Column("mapped_id", String(500), nullable=False),
    Column("reference", String(500)),
    Column("data", JSON),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("public_id", PUBLIC_ID, nullable=False, unique=True),
    Column("org_id", ForeignKey("organizations.id"), nullable=False),
    Column("task_seq", ForeignKey("tasks.seq", ondelete="CASCADE"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    # http: POST the event to url; prefect: resume a Prefect flow run (target holds it).
    Column("kind", String(16), nullable=False, server_default="http"),
    Column("target", JSON),
    Column("created_by", EMAIL),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
    Column("disabled_reason", Text),
    # Which signing key derived this webhook's secret (its fingerprint).
    Column("key_id", String(16)),
)

# The transactional outbox: an event per status change, written in the same
# transaction as the change, with one delivery per registered webhook.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    # `webhook-id` of the Standard Webhooks spec: the same on every retry.
    Column("public_id", String(40), nullable=False, unique=True),
    Column("org_id", ForeignKey("organizations.id"), nullable=False),
    Column("task_seq", ForeignKey("tasks.seq", ondelete="CASCADE"), nullable=False, index=True),
    Column("type", String(40), nullable=False),
    # The exact bytes every delivery of this event sends.
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("public_id", PUBLIC_ID, nullable=False, unique=True),
    Column(
        "event_id", ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("webhook_id", ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False, index=True),
    # pending -> delivered | failed (gave up) | cancelled (webhook disabled)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # A dispatcher's lease: while in the future, nobody else attempts this delivery.
    Column("claimed_until", UTCDateTime),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("delivered_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
    Column("response_body", Text),
)


# The mail outbox (issue 16): every message the service sends, written in the
# transaction of the change that causes it, sent by a dispatcher in each replica
# (claimed with a lease, like webhook deliveries), logged per attempt. No bodies:
# a message is rendered when it is sent, with the task as it then is and fresh links.
mail_messages = Table(
    "mail_messages",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("public_id", PUBLIC_ID, nullable=False, unique=True),
    Column("org_id", ForeignKey("organizations.id"), nullable=False),
    Column("task_seq", ForeignKey("tasks.seq", ondelete="CASCADE"), nullable=False, index=True),
    # approval | copy | reminder | reassigned | escalation | escalated | outcome
    Column("kind", String(16), nullable=False),
    Column("recipient", EMAIL, nullable=False),
    # Which one of its kind (reminder n, the n-th reassignment or status change): part
    # of the Message-ID.
    Column("sequence", Integer, nullable=False, server_default="0"),
    # What the mail says besides the task (who passed it on, why it escalated): no links.
    Column("context", JSON),
    # pending -> sent | failed (gave up) | cancelled (no longer true when its turn came)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # A dispatcher's lease: while in the future, nobody else sends this message.
    Column("claimed_until", UTCDateTime),
    # The Message-ID header, the same on every attempt (set by the first).
    Column("message_id", String(255)),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_mail_messages_due", "status", "next_attempt_at"),
)

mail_attempts = Table(
    "mail_attempts",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column(
        "message_id",
        ForeignKey("mail_messages.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    # The SMTP server's reply code (250 on success), when it answered.
    Column("smtp_code", Integer),
    Column("error", Text),
)

# Standing delegations: while starts_at <= now < ends_at, tasks created for
# from_email go to to_email. One per person (PUT replaces it).
delegations = Table(
    "delegations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", ForeignKey("organizations.id"), nullable=False),
    Column("from_email", EMAIL, nullable=False),
    Column("to_email", EMAIL, nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_by", EMAIL),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "from_email", name="uq_delegations_org_from"),
)
