"""Several approvers, custom responses and forms (issue 17), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from peopletasks.domain import Domain
from peopletasks.store.tables import tasks, webhook_events
from tests.conftest import Api, ApiFactory, error_of

PEOPLE = [f"p{i}@example.com" for i in range(1, 6)]
REQUESTER = "asker@example.com"
OPTIONS = [
    {"key": "yes", "label": "Approve", "outcome": "approved"},
    {"key": "changes", "label": "Send back for changes", "outcome": "rejected"},
    {"key": "no", "label": "Reject", "outcome": "rejected"},
]
FORM = {
    "type": "object",
    "properties": {
        "budget": {"type": "string", "title": "Budget line", "enum": ["ops", "capex"]},
        "amount": {"type": "integer", "minimum": 1, "maximum": 1000},
        "start": {"type": "string", "format": "date"},
        "urgent": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}]},
    },
    "required": ["budget", "amount"],
}


async def several(api: Api, people: list[str], rule: str, **fields: Any) -> dict[str, Any]:
    return await api.create(
        requester=REQUESTER, approvers=people, decisionRule=rule, approver=people[0], **fields
    )


async def respond(
    anonymous: Api, task: dict[str, Any], email: str, outcome: str, **body: Any
) -> Any:
    secret = task["approverSecrets"][email]
    action = {"approved": "approve", "rejected": "reject"}[outcome]
    return await anonymous.put(f"/tasks/{task['id']}/{action}", json={"secret": secret, **body})


def expected(rule: str, quorum: int, n: int, responses: list[str]) -> list[str | None]:
    """The task's status after each response, by the rules as docs/api.md states them."""
    out: list[str | None] = []
    approvals = rejections = 0
    final: str | None = None
    for outcome in responses:
        if final is None:
            approvals += outcome == "approved"
            rejections += outcome == "rejected"
            if rule == "any":
                final = outcome
            elif rule in ("all", "sequential"):
                final = "rejected" if rejections else "approved" if approvals == n else None
            else:
                final = (
                    "approved"
                    if approvals >= quorum
                    else "rejected"
                    if n - rejections < quorum
                    else None
                )
        out.append(final)
    return out


@pytest.mark.parametrize("rule", ["any", "all", "quorum", "sequential"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
async def test_each_rules_truth_table(api: Api, anonymous: Api, rule: str, n: int) -> None:
    rng = random.Random(f"{rule}-{n}")
    people = PEOPLE[:n]
    cases = [["approved"] * n, ["rejected"] * n]
    cases += [[rng.choice(["approved", "rejected"]) for _ in range(n)] for _ in range(4)]
    for outcomes in cases:
        quorum = max(1, n // 2 + 1) if rule == "quorum" else None
        extra = {"quorum": quorum} if quorum else {}
        task = await several(api, people, rule, **extra)
        order = list(people) if rule == "sequential" else rng.sample(people, n)
        want = expected(rule, quorum or n, n, outcomes)
        for i, (email, outcome) in enumerate(zip(order, outcomes, strict=True)):
            answer = await respond(anonymous, task, email, outcome)
            final_before = want[i - 1] if i else None
            if final_before is not None:
                assert answer.status_code == 409, (rule, outcomes, i, answer.text)
                assert error_of(answer)["code"] == "already_decided"
                break
            assert answer.status_code == 200, (rule, outcomes, i, answer.text)
            assert answer.json()["status"] == (want[i] or "pending"), (rule, outcomes, i)
            if rule == "sequential" and want[i] is None and n > 1:
                states = answer.json()["approvers"]
                assert states[i + 1]["status"] == "pending"
                assert all(s["status"] == "waiting" for s in states[i + 2 :])


async def test_a_quorum_that_can_no_longer_be_reached_rejects(api: Api, anonymous: Api) -> None:
    task = await several(api, PEOPLE[:4], "quorum", quorum=3)
    assert (await respond(anonymous, task, PEOPLE[0], "rejected")).json()["status"] == "pending"
    assert (await respond(anonymous, task, PEOPLE[1], "approved")).json()["status"] == "pending"
    final = await respond(anonymous, task, PEOPLE[2], "rejected")
    assert final.json()["status"] == "rejected"  # 3 approvals are out of reach
    assert final.json()["decidedBy"] == PEOPLE[2]


async def test_sequential_turns_and_one_response_each(api: Api, anonymous: Api) -> None:
    task = await several(api, PEOPLE[:3], "sequential")
    early = await respond(anonymous, task, PEOPLE[1], "approved")
    assert early.status_code == 409
    assert error_of(early)["code"] == "not_your_turn"
    assert PEOPLE[0] in error_of(early)["message"]
    assert (await respond(anonymous, task, PEOPLE[0], "approved")).status_code == 200
    again = await respond(anonymous, task, PEOPLE[0], "rejected")
    assert again.status_code == 409
    assert error_of(again)["code"] == "already_responded"
    shown = (await api.get(f"/tasks/{task['id']}")).json()
    assert [a["status"] for a in shown["approvers"]] == ["approved", "pending", "waiting"]


async def test_each_approver_has_their_own_secret_and_links(api: Api, anonymous: Api) -> None:
    task = await several(api, PEOPLE[:3], "all")
    secrets = task["approverSecrets"]
    assert set(secrets) == set(PEOPLE[:3]) and len(set(secrets.values())) == 3
    assert task["approverSecret"] == secrets[PEOPLE[0]]
    # p2's secret speaks for p2, and reads the task.
    seen = await anonymous.get(f"/tasks/{task['id']}", params={"secret": secrets[PEOPLE[1]]})
    assert seen.status_code == 200
    answer = await respond(anonymous, task, PEOPLE[1], "approved", comment="fine by me")
    states = answer.json()["approvers"]
    assert states[1] == {
        "email": PEOPLE[1],
        "status": "approved",
        "respondedAt": states[1]["respondedAt"],
        "comment": "fine by me",
        "option": "approve",
        "data": None,
    }
    assert states[0]["status"] == states[2]["status"] == "pending"


async def test_a_second_approver_finds_the_task_in_their_list(
    api: Api, new_api: ApiFactory
) -> None:
    task = await several(api, PEOPLE[:3], "any")
    third = await new_api(PEOPLE[2])
    listed = await third.get("/tasks", params={"role": "approver"})
    assert [t["id"] for t in listed.json()] == [task["id"]]
    assert (await third.get("/tasks-count", params={"role": "approver"})).json() == {"count": 1}
    decided = await third.put(f"/tasks/{task['id']}/reject", json={"comment": "no"})
    assert decided.status_code == 200
    assert decided.json()["status"] == "rejected"


async def test_custom_options_and_respond(api: Api, anonymous: Api) -> None:
    task = await api.create(requester=REQUESTER, options=OPTIONS)
    assert task["options"] == OPTIONS
    secret = task["approverSecret"]
    unknown = await anonymous.put(
        f"/tasks/{task['id']}/respond", json={"secret": secret, "option": "maybe"}
    )
    assert unknown.status_code == 422
    assert error_of(unknown)["details"][0]["field"] == "option"
    sent_back = await anonymous.put(
        f"/tasks/{task['id']}/respond",
        json={"secret": secret, "option": "changes", "comment": "split the costs"},
    )
    assert sent_back.status_code == 200, sent_back.text
    body = sent_back.json()
    assert (body["status"], body["option"], body["comment"]) == (
        "rejected",
        "changes",
        "split the costs",
    )
    # approve / reject choose the first option of that outcome.
    other = await api.create(requester=REQUESTER, options=OPTIONS)
    rejected = await anonymous.put(
        f"/tasks/{other['id']}/reject", json={"secret": other["approverSecret"]}
    )
    assert rejected.json()["option"] == "changes"
    links = set(other["links"]) - {"expiresAt"}
    assert links == {"yes", "changes", "no"}


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ([OPTIONS[0]], "options"),
        ([OPTIONS[0], {**OPTIONS[0], "label": "Again"}], "options"),
        ([OPTIONS[0], {**OPTIONS[1], "outcome": "approved"}], "options"),
        ([OPTIONS[0], {**OPTIONS[1], "key": "not a key"}], "options.1.key"),
        ([OPTIONS[0], {**OPTIONS[1], "label": ""}], "options.1.label"),
        ([OPTIONS[0], {**OPTIONS[1], "outcome": "due"}], "options.1.outcome"),
    ],
)
async def test_bad_options_are_refused_naming_the_field(
    api: Api, options: list[dict[str, str]], where: str
) -> None:
    body = {"title": "t", "requester": REQUESTER, "approver": PEOPLE[0], "options": options}
    response = await api.post("/tasks", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["details"][0]["field"] == where


async def test_a_form_is_validated_and_stored_with_the_response(api: Api, anonymous: Api) -> None:
    task = await api.create(requester=REQUESTER, form=FORM)
    assert task["form"] == FORM
    path = f"/tasks/{task['id']}/respond"
    secret = task["approverSecret"]

    async def send(data: Any, option: str = "approve") -> Any:
        return await anonymous.put(path, json={"secret": secret, "option": option, "data": data})

    for data, where in [
        ({"budget": "ops"}, "data.amount"),
        ({"budget": "travel", "amount": 5}, "data.budget"),
        ({"budget": "ops", "amount": 5000}, "data.amount"),
        ({"budget": "ops", "amount": 5.5}, "data.amount"),
        ({"budget": "ops", "amount": 5, "start": "5 May"}, "data.start"),
        ({"budget": "ops", "amount": 5, "note": "x" * 21}, "data.note"),
        ({"budget": "ops", "amount": 5, "colour": "red"}, "data.colour"),
        ("not an object", "data"),
    ]:
        refused = await send(data)
        assert refused.status_code == 422, (data, refused.text)
        assert error_of(refused)["details"][0]["field"] == where
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"
    good = {"budget": "capex", "amount": 250, "start": "2027-01-04", "urgent": True, "note": None}
    answer = await send(good)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == good
    assert answer.json()["approvers"][0]["data"] == good


async def test_a_rejection_may_leave_the_form_empty(api: Api, anonymous: Api) -> None:
    task = await api.create(requester=REQUESTER, form=FORM)
    answer = await anonymous.put(
        f"/tasks/{task['id']}/reject", json={"secret": task["approverSecret"]}
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == "rejected"


@pytest.mark.parametrize(
    ("form", "where"),
    [
        ({"type": "array"}, "form"),
        ({"type": "object", "properties": {}}, "form.properties"),
        ({"type": "object", "properties": {"a": {"type": "object"}}}, "form.properties.a"),
        (
            {"type": "object", "properties": {"a": {"type": "integer", "maxLength": 3}}},
            "form.properties.a",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}},
            "form.properties.a",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
            "form.required",
        ),
    ],
)
async def test_bad_forms_are_refused_naming_where(
    api: Api, form: dict[str, Any], where: str
) -> None:
    body = {"title": "t", "requester": REQUESTER, "approver": PEOPLE[0], "form": form}
    response = await api.post("/tasks", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["details"][0]["field"] == where


async def test_a_requester_may_not_approve_their_own_request(
    api: Api, new_api: ApiFactory, anonymous: Api
) -> None:
    body = {"title": "t", "requester": PEOPLE[0], "approvers": PEOPLE[:2]}
    refused = await api.post("/tasks", json=body)
    assert refused.status_code == 422
    assert error_of(refused)["details"][0]["field"] == "requester"
    allowed = await api.post("/tasks", json={**body, "allowSelfApproval": True})
    assert allowed.status_code == 201, allowed.text
    # Allowed on the task: the requester's response counts.
    requester = await new_api(PEOPLE[0])
    task = allowed.json()
    assert (await requester.put(f"/tasks/{task['id']}/approve")).status_code == 200
    # A token of the requester who is not an approver: 403.
    plain = await api.create(requester=PEOPLE[4], approvers=PEOPLE[:2], approver=PEOPLE[0])
    by_requester = await (await new_api(PEOPLE[4])).put(f"/tasks/{plain['id']}/approve")
    assert by_requester.status_code == 403


async def test_create_checks_the_rule(api: Api) -> None:
    base = {"title": "t", "requester": REQUESTER, "approvers": PEOPLE[:3]}
    for extra, where in [
        ({"decisionRule": "quorum"}, "quorum"),
        ({"decisionRule": "quorum", "quorum": 4}, "quorum"),
        ({"decisionRule": "all", "quorum": 2}, "quorum"),
        ({"decisionRule": "most"}, "decisionRule"),
        ({"approver": PEOPLE[3]}, "approver"),
        ({"approvers": [PEOPLE[0], PEOPLE[0].upper()]}, "approvers"),
        ({"approvers": [f"a{i}@example.com" for i in range(21)]}, "approvers"),
    ]:
        response = await api.post("/tasks", json={**base, **extra})
        assert response.status_code == 422, (extra, response.text)
        assert error_of(response)["details"][0]["field"] == where
    missing = await api.post("/tasks", json={"title": "t", "requester": REQUESTER})
    assert error_of(missing)["details"][0]["field"] == "approver"


async def test_the_history_shows_each_response(api: Api, anonymous: Api) -> None:
    task = await several(api, PEOPLE[:2], "all")
    await respond(anonymous, task, PEOPLE[1], "approved", comment="ok")
    await respond(anonymous, task, PEOPLE[0], "approved")
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert [(h["event"], h["changedBy"]) for h in history] == [
        ("created", "flows@example.com"),
        ("responded", PEOPLE[1]),
        ("responded", PEOPLE[0]),
        ("approved", PEOPLE[0]),
    ]


async def test_concurrent_responders_move_the_status_exactly_once(
    api: Api, anonymous: Api, domain: Domain
) -> None:
    """100 rounds: an `all` task of five approvers, 50 responses at once (each approver
    ten times): five win, one status change, one status event (and five responses)."""
    with_hook = {"url": "http://127.0.0.1:9/never"}  # events are written, never sent here
    for _round in range(100):
        task = await several(api, PEOPLE, "all")
        hook = await api.post("/webhooks", json={"taskId": task["id"], **with_hook})
        assert hook.status_code == 201
        calls = [respond(anonymous, task, email, "approved") for email in PEOPLE * 10]
        answers = await asyncio.gather(*calls)
        codes = sorted(a.status_code for a in answers)
        assert codes == [200] * 5 + [409] * 45, codes
        shown = (await api.get(f"/tasks/{task['id']}")).json()
        assert shown["status"] == "approved"
        assert [h["to"] for h in shown["statusHistory"]] == ["pending", "approved"]
        async with domain.db.read() as conn:
            seq = await conn.scalar(select(tasks.c.seq).where(tasks.c.id == task["id"]))
            types = dict(
                (
                    await conn.execute(
                        select(webhook_events.c.type, func.count())
                        .where(webhook_events.c.task_seq == seq)
                        .group_by(webhook_events.c.type)
                    )
                ).all()
            )
        assert types == {"task.approved": 1, "task.responded": 5}


async def test_pages_offer_each_option_and_the_form(api: Api) -> None:
    task = await api.create(requester=REQUESTER, options=OPTIONS, form=FORM)
    page = await api.http.get(urlsplit(task["links"]["changes"]).path)
    assert page.status_code == 200
    html = page.text
    assert html.index("Send back for changes") < html.index(">Approve<")  # the link's first
    for label in ("Budget line", "amount", "start", "urgent"):
        assert label in html
    assert 'type="date"' in html and 'type="number"' in html and "<select" in html
