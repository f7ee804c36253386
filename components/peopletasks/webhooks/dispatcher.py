"""The dispatcher: sends outbox deliveries, logs each attempt, schedules retries.

One runs inside every service process. It claims due deliveries (a lease, so
replicas never attempt the same one at once), sends each concurrently — a slow
receiver holds only its own slot — and writes the outcomes back in batches.
A crash loses nothing: unfinished claims expire and are attempted again, with
the same `webhook-id`, so receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from peopletasks import __version__
from peopletasks.batching import BatchWriter
from peopletasks.domain import Domain
from peopletasks.domain.deliveries import (
    AttemptResult,
    claim_deliveries,
    has_due_deliveries,
    next_attempt_due,
    record_attempts,
)
from peopletasks.domain.handoff import ClaimedDelivery
from peopletasks.domain.webhooks import webhook_secret
from peopletasks.timeutil import utcnow
from peopletasks.webhooks.http import HTTPTransport
from peopletasks.webhooks.retry import RetryStrategy, parse_retry_after
from peopletasks.webhooks.sender import Sender
from peopletasks.webhooks.signatures import signed_headers
from peopletasks.webhooks.targets import TargetRefused
from peopletasks.webhooks.transport import (
    Reply,
    SendError,
    SendTimeout,
    Transport,
    UnsendableRequest,
)

log = logging.getLogger("peopletasks.webhooks")

USER_AGENT = f"peopletasks-webhooks/{__version__}"
RESPONSE_BODY_CAP = 4096
#: Reading a flow run (its parameters come with it) may take more than a delivery's answer.
FLOW_RUN_BODY_CAP = 1024 * 1024
#: Prefect's final state types: a run in one of them will never pause again.
PREFECT_TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
CLAIM_BATCH = 200
SHUTDOWN_SECONDS = 5.0


@dataclass
class _Outcome:
    status_code: int | None = None
    error: str | None = None
    body: str | None = None
    delivered: bool = False
    retry_after: float | None = None
    gone: bool = False
    final: bool = False  #: not delivered, and no later attempt could be: do not retry


def make_sender(
    *,
    allow_private: bool,
    timeout: float = 10.0,
    trusted: tuple[str, ...] = (),
    transport: Transport | None = None,
) -> Sender:
    """The sender deliveries go out through: over `HTTPTransport` (SSRF-checked; `trusted`:
    URLs whose origins are connected to whatever their address) unless another
    `transport` is given (tests: `MockTransport`); answers capped."""
    if transport is None:
        transport = HTTPTransport(
            allow_private=allow_private,
            trusted=trusted,
            timeout=timeout,
            connect_timeout=min(timeout, 5.0),
        )
    return Sender(transport, body_cap=RESPONSE_BODY_CAP, user_agent=USER_AGENT)


def run_input_of(task: dict[str, Any]) -> dict[str, Any]:
    """The decision as a waiting Prefect flow run receives it (its run input)."""
    return {
        "status": task["status"],
        "approved": task["status"] == "approved",
        "task_id": task["id"],
        "decided_by": task.get("decidedBy"),
        "decided_at": task.get("decidedAt"),
        "comment": task.get("comment"),
    }


class Dispatcher:
    def __init__(
        self,
        domain: Domain,
        sender: Sender,
        *,
        strategy: RetryStrategy | None = None,
        concurrency: int = 64,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        attempt_timeout: float = 10.0,
    ) -> None:
        self.domain = domain
        self.sender = sender
        self.strategy = strategy or RetryStrategy()
        self.concurrency = concurrency
        self._lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.attempt_timeout = attempt_timeout
        self._inflight: set[asyncio.Task[None]] = set()
        self._results = BatchWriter(self._write, what="webhook attempts")

    # -- the loop ---------------------------------------------------------------

    @property
    def lease_seconds(self) -> float:  # for Handoff
        return self._lease_seconds

    def room(self) -> int:
        """Deliveries it would start now (the fast path from commit; see domain.events)."""
        return self.concurrency - len(self._inflight)

    def take(self, deliveries: list[ClaimedDelivery]) -> None:
        """Start deliveries claimed for this dispatcher as their decision committed."""
        for delivery in deliveries:
            self._start(delivery)

    def _start(self, delivery: ClaimedDelivery) -> None:
        task = asyncio.create_task(self._attempt(delivery), name=f"delivery-{delivery.id}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def run(self) -> None:
        flusher = asyncio.create_task(self._results.run(), name="webhook-results")
        self.domain.handoff = self
        try:
            while True:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatcher step failed; retrying shortly")
                    await asyncio.sleep(self.poll_seconds)
        finally:
            if self.domain.handoff is self:
                self.domain.handoff = None
            # Shut down within a bounded time: unfinished attempts keep their lease
            # and are made again by the next dispatcher.
            for task in list(self._inflight):
                task.cancel()
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=SHUTDOWN_SECONDS)
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._results.drain(), SHUTDOWN_SECONDS)

    async def _step(self) -> None:
        self.domain.outbox_ready.clear()
        free = self.concurrency - len(self._inflight)
        wanted = min(free, CLAIM_BATCH)
        claimed: list[ClaimedDelivery] = []
        if wanted > 0 and await has_due_deliveries(self.domain):
            claimed = await claim_deliveries(self.domain, wanted, self._lease_seconds)
        for delivery in claimed:
            self._start(delivery)
        if claimed and len(claimed) == wanted:
            return  # there may be more right away
        if free <= 0:
            await asyncio.wait(
                self._inflight, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            return
        timeout = self.poll_seconds
        due = await next_attempt_due(self.domain)
        if due is not None:
            timeout = min(timeout, max(0.0, (due - utcnow()).total_seconds()))
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.domain.outbox_ready.wait()

    # -- one attempt ------------------------------------------------------------

    async def _attempt(self, delivery: ClaimedDelivery) -> None:
        attempted_at = utcnow()
        started = time.perf_counter()
        try:
            outcome = await self._send(delivery)
        except asyncio.CancelledError:
            raise  # shutting down: the lease expires and another attempt follows
        except Exception as exc:  # never let one delivery kill the dispatcher
            log.exception("delivery %s failed unexpectedly", delivery.id)
            outcome = _Outcome(error=f"internal error: {type(exc).__name__}")
        latency_ms = int((time.perf_counter() - started) * 1000)
        retry_at = None
        if not outcome.delivered and not outcome.gone and not outcome.final:
            retry_at = self.strategy.next_attempt(
                delivery.attempt,
                now=utcnow(),
                event_created_at=delivery.event_created_at,
                retry_after=outcome.retry_after,
            )
        self._results.put(
            AttemptResult(
                delivery_id=delivery.id,
                attempted_at=attempted_at,
                latency_ms=latency_ms,
                delivered=outcome.delivered,
                status_code=outcome.status_code,
                error=outcome.error,
                response_body=outcome.body,
                retry_at=retry_at,
                disable_webhook=outcome.gone,
            )
        )

    async def _send(self, delivery: ClaimedDelivery) -> _Outcome:
        secret = webhook_secret(self.domain, delivery.webhook_public_id, delivery.key_id)
        if secret is None:
            return _Outcome(
                error="the signing key that derived this webhook's secret is no longer listed "
                "in PEOPLETASKS_SECRET_KEY"
            )
        headers = {"content-type": "application/json"}
        if delivery.kind == "prefect":
            payload = orjson.dumps({"run_input": run_input_of(orjson.loads(delivery.body))})
            api_key = (delivery.target or {}).get("apiKey")
            if api_key:
                headers["authorization"] = f"Bearer {api_key}"
        else:
            payload = delivery.body.encode()
        headers.update(signed_headers(secret, delivery.message_id, payload))
        try:
            # The sender bounds connecting and each exchange; this bounds the whole
            # attempt (a receiver trickling bytes cannot hold a slot for ever).
            async with asyncio.timeout(self.attempt_timeout):
                reply = await self.sender.post(delivery.url, payload, headers)
                outcome = _outcome_of(reply)
                if delivery.kind == "prefect" and outcome.delivered:
                    await self._prefect_outcome(delivery, reply, outcome)
        except TargetRefused as exc:
            return _Outcome(error=f"refused: {exc}")
        except (SendTimeout, TimeoutError) as exc:
            return _Outcome(error=f"timeout: {exc or type(exc).__name__}")
        except UnsendableRequest as exc:  # as it is stored, no attempt can succeed
            return _Outcome(error=f"cannot be sent: {exc}", final=True)
        except SendError as exc:
            return _Outcome(error=str(exc))
        return outcome

    async def _prefect_outcome(
        self, delivery: ClaimedDelivery, reply: Reply, outcome: _Outcome
    ) -> None:
        """Prefect answered the resume: ACCEPT delivers. ABORT for a run that has already
        finished ends the delivery (it can never be resumed); any other answer is retried
        (e.g. the run has not paused yet)."""
        outcome.delivered, outcome.error = _prefect_accepted(reply.body)
        if outcome.delivered or _orchestration_status(reply.body) != "ABORT":
            return
        target = delivery.target or {}
        headers = {"accept": "application/json"}
        if target.get("apiKey"):
            headers["authorization"] = f"Bearer {target['apiKey']}"
        url = f"{target.get('apiUrl', '')}/flow_runs/{target.get('flowRunId', '')}"
        try:
            run = await self.sender.get(url, headers, body_cap=FLOW_RUN_BODY_CAP)
        except (TargetRefused, SendError) as exc:  # SendTimeout included
            outcome.error = f"{outcome.error}; reading the flow run failed: {exc}"
            return
        state_type = _flow_run_state_type(run) if run.status == 200 else None
        if state_type in PREFECT_TERMINAL_STATES:
            outcome.final = True
            outcome.error = f"flow run is {state_type}; nothing to resume"
        elif state_type is not None:
            outcome.error = f"{outcome.error} (flow run is {state_type})"
        else:
            outcome.error = f"{outcome.error}; reading the flow run answered HTTP {run.status}"

    # -- results ----------------------------------------------------------------

    async def _write(self, batch: list[AttemptResult]) -> None:
        await record_attempts(self.domain, batch)
        if any(not r.delivered and r.retry_at is not None for r in batch):
            self.domain.outbox_ready.set()


def _outcome_of(reply: Reply) -> _Outcome:
    """What an HTTP answer means for a delivery: 2xx delivers, 410 disables, else retry."""
    outcome = _Outcome(status_code=reply.status, body=reply.body.decode("utf-8", "replace"))
    if 200 <= reply.status < 300:
        outcome.delivered = True
    elif reply.status == 410:
        outcome.gone = True
        outcome.error = "410 Gone: webhook disabled"
    else:
        outcome.error = f"HTTP {reply.status}"
        outcome.retry_after = parse_retry_after(reply.headers.get("retry-after"), utcnow())
    return outcome


def _orchestration_status(raw: bytes) -> str | None:
    try:
        status = orjson.loads(raw).get("status")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return status if isinstance(status, str) else None


def _prefect_accepted(raw: bytes) -> tuple[bool, str | None]:
    """Prefect answers a resume with 200 and an orchestration result: ACCEPT resumed it."""
    status = _orchestration_status(raw)
    if status is None:
        return False, "Prefect answered with something other than an orchestration result"
    if status == "ACCEPT":
        return True, None
    return False, f"Prefect did not resume the run: {status}"


def _flow_run_state_type(reply: Reply) -> str | None:
    """The `state_type` of Prefect's flow run (`GET /flow_runs/{id}`), if it says one."""
    try:
        state_type = orjson.loads(reply.body).get("state_type")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return state_type if isinstance(state_type, str) else None
