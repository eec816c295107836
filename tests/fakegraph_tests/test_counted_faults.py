"""Counted faults (every nth operation or request, an action at an exact count), the
"lost answer" faults that apply a write and then lose its answer, slow requests, and the
identity platform's clock offset."""

from __future__ import annotations

import httpx
import pytest

from tests.fakegraph import FakeEntra, LoggedRequest, Write

from .wiring import GRAPH_SCOPE, msal_app, raw_client


def graph_log(fake: FakeEntra) -> list[LoggedRequest]:
    return [r for r in fake.requests if r.path.startswith("/v1.0")]


def patch_batch(http: httpx.Client, users: list[str], value: str) -> httpx.Response:
    return http.post(
        "/$batch",
        json={
            "requests": [
                {
                    "id": str(n),
                    "method": "PATCH",
                    "url": f"/users/{user}",
                    "headers": {"Content-Type": "application/json"},
                    "body": {"department": value},
                }
                for n, user in enumerate(users)
            ]
        },
    )


def test_every_nth_operation_of_the_named_methods(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.every(3, 429, methods={"get"})
    with raw_client(fake_entra) as http:
        reads = [http.get(f"/users/{user}").status_code for _ in range(7)]
        write = http.patch(f"/users/{user}", json={"department": "x"}).status_code
    assert reads == [200, 200, 429, 200, 200, 429, 200]
    assert write == 204  # PATCH is not counted by a GET rule


def test_every_nth_request_counts_a_batch_once(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(3)]
    fake_entra.faults.every_request(2, "drop")
    with raw_client(fake_entra) as http:
        first = patch_batch(http, users, "a")
        with pytest.raises(httpx.RemoteProtocolError):
            patch_batch(http, users, "b")
        third = patch_batch(http, users, "c")
    assert (first.status_code, third.status_code) == (200, 200)
    assert [w.new for w in fake_entra.writes] == ["a"] * 3 + ["c"] * 3  # the drop wrote nothing


def test_applied_then_504_writes_and_loses_the_answer(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.script("applied-504")
    with raw_client(fake_entra) as http:
        answer = http.patch(f"/users/{user}", json={"department": "Sales"})
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "GatewayTimeout"
    assert fake_entra.writes == [Write(user, "department", None, "Sales")]
    last = graph_log(fake_entra)[-1]
    assert (last.method, last.status, last.answer_lost) == ("PATCH", 504, True)


def test_applied_then_dropped_writes_and_closes_the_connection(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.every(1, "applied-drop", methods={"PATCH"})
    with raw_client(fake_entra) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.patch(f"/users/{user}", json={"department": "Sales"})
        assert http.get(f"/users/{user}?$select=department").json()["department"] == "Sales"
    assert fake_entra.writes == [Write(user, "department", None, "Sales")]
    last = [r for r in graph_log(fake_entra) if r.method == "PATCH"][-1]
    assert (last.status, last.answer_lost) == (None, True)
    assert fake_entra.count("PATCH") == 0  # never answered


def test_lost_sub_responses_in_a_batch(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(4)]
    fake_entra.faults.every(2, "applied-504", methods={"PATCH"})
    with raw_client(fake_entra) as http:
        answer = patch_batch(http, users, "Sales")
    assert answer.status_code == 200
    statuses = {r["id"]: r["status"] for r in answer.json()["responses"]}
    assert statuses == {"0": 204, "1": 504, "2": 204, "3": 504}
    assert [w.user_id for w in fake_entra.writes] == users  # all four applied
    lost = [r.batch_id for r in graph_log(fake_entra) if r.answer_lost]
    assert lost == ["1", "3"]


def test_a_batch_dropped_after_it_ran(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(3)]
    fake_entra.faults.every(2, "applied-drop", methods={"PATCH"})  # the second sub-request
    with raw_client(fake_entra) as http, pytest.raises(httpx.RemoteProtocolError):
        patch_batch(http, users, "Sales")
    assert [w.user_id for w in fake_entra.writes] == users  # every sub-request ran
    log = graph_log(fake_entra)
    assert [(r.method, r.status, r.answer_lost) for r in log] == [
        ("PATCH", None, True),
        ("PATCH", None, True),
        ("PATCH", None, True),
        ("POST", None, True),
    ]


def test_a_batch_answered_504_after_it_ran(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(2)]
    fake_entra.faults.every_request(1, "applied-504")
    with raw_client(fake_entra) as http:
        answer = patch_batch(http, users, "Sales")
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "GatewayTimeout"
    assert [w.user_id for w in fake_entra.writes] == users


def test_a_slow_request_is_dropped_unprocessed_when_the_client_gives_up(
    fake_entra: FakeEntra,
) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.every_request(1, "slow", methods={"PATCH"})
    with raw_client(fake_entra) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.patch(f"/users/{user}", json={"department": "Sales"}, timeout=0.2)
        fake_entra.faults.slow_seconds = 0.05  # a patient client gets its (slow) answer
        later = http.patch(f"/users/{user}", json={"department": "Field"})
    assert later.status_code == 204
    assert fake_entra.writes == [Write(user, "department", None, "Field")]
    assert [(r.method, r.status) for r in graph_log(fake_entra)] == [
        ("PATCH", None),
        ("PATCH", 204),
    ]


def test_an_action_at_an_exact_count(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.after(2, fake_entra.expire_tokens, methods={"PATCH"})
    with raw_client(fake_entra) as http:
        statuses = [
            http.patch(f"/users/{user}", json={"department": str(n)}).status_code for n in range(3)
        ]
        refused = http.get(f"/users/{user}")
    assert statuses == [204, 204, 401]
    assert refused.json()["error"]["message"] == (
        "Lifetime validation failed, the token is expired."
    )


def test_counting_rules_are_reset(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.every(1, 503)
    fake_entra.faults.every_request(1, "drop")
    fake_entra.faults.after(1, fake_entra.expire_tokens)
    fake_entra.faults.reset()
    with raw_client(fake_entra) as http:
        assert http.get(f"/users/{user}").status_code == 200
        assert http.get(f"/users/{user}").status_code == 200


def test_unknown_faults_are_refused(fake_entra: FakeEntra) -> None:
    with pytest.raises(ValueError, match="unknown outcome 'lost'"):
        fake_entra.faults.every(2, "lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown request fault 429"):
        fake_entra.faults.every_request(2, 429)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be 1 or more, not 0"):
        fake_entra.faults.every(0, 429)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-7200.0, "Lifetime validation failed, the token is expired."),
        (3600.0, "Lifetime validation failed, the token is not yet valid."),
    ],
)
def test_identity_clock_offset_makes_tokens_invalid_at_graph(
    fake_entra: FakeEntra, offset: float, message: str
) -> None:
    user = fake_entra.add_user()
    fake_entra.identity_clock_offset = offset
    with raw_client(fake_entra) as http:  # the token is issued (msal does not check it)
        refused = http.get(f"/users/{user}")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert refused.json()["error"]["message"] == message


def test_identity_clock_offset_refuses_client_assertions(fake_entra: FakeEntra) -> None:
    assert fake_entra.app is not None
    fake_entra.identity_clock_offset = 3600.0
    app = msal_app(
        fake_entra,
        {
            "private_key": fake_entra.app.private_key_pem,
            "thumbprint": fake_entra.app.thumbprint,
        },
    )
    result = app.acquire_token_for_client([GRAPH_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith(
        "AADSTS700024: Client assertion is not within its valid time range."
    )
