"""Property-based runs against the API, generated from its own OpenAPI schema (schemathesis).

Two properties, for every operation in ``/api/schema``, with valid and invalid
(negative) inputs that schemathesis derives from the schema:

* signed in as a normal user, no request produces a 5xx, and every answer
  whose status the schema documents matches the documented body and content
  type (``status_code_conformance`` is left out: the schema documents only the
  success codes, so each 400/404 would be flagged);
* ownership: bob sends every operation with alice's order ID in the path
  parameters. He must get 404 for her order (with the coverage phase, also
  methods the path lacks, 405, and requests without his token, 401), his
  answers must not contain her data, and her order and account must be
  unchanged afterwards.

The requests go to the Django WSGI application in-process (no server), with
the test database, so this runs on SQLite and PostgreSQL alike
(``DATABASE_URL=postgres://...``). ``transactional_db``: every request commits
as it would in production, so a database error in one request cannot poison
the transaction of the next one (on PostgreSQL a test-wide transaction would
turn it into false 500s).

Short and repeatable by default: 15 examples per operation and property, the
same ones every run (``derandomize``), about 10 seconds. Run longer by hand,
with fresh random examples each time, and optionally schemathesis's coverage
phase (boundary values of every field, a few hundred cases per operation,
minutes):

    FUZZ_EXAMPLES=1000 /tmp/venvtest/bin/pytest tests/fuzz -p no:cacheprovider
    FUZZ_EXAMPLES=200 FUZZ_COVERAGE=1 /tmp/venvtest/bin/pytest tests/fuzz -p no:cacheprovider

Bodies that the in-process transport cannot encode (a JSON array or a
scalar sent as a form) are skipped: no HTTP client could send them either.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
import schemathesis
from django.forms.models import model_to_dict
from hypothesis import HealthCheck, Phase, reject, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from schemathesis.transport.prepare import get_exclude_headers

from accounts.models import User
from accounts.tokens import token_for
from bitrixsync.wsgi import application
from orders.models import Order

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or 15
LONG_RUN = "FUZZ_EXAMPLES" in os.environ
COVERAGE = os.environ.get("FUZZ_COVERAGE") == "1"
ALICE_MARK = "alice-private-9f31c"  # appears in alice's data only: must never reach bob

schema = schemathesis.openapi.from_wsgi("/api/schema", application)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # The suite: the same examples every run, so it is never flaky and a failure reproduces.
    derandomize=not LONG_RUN,
    # ``explicit`` holds schemathesis's coverage cases: thorough, but minutes per run.
    phases=[Phase.explicit, Phase.generate, Phase.shrink] if COVERAGE else [Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_data(db) -> tuple[User, Order]:
    alice = User.objects.create_user(
        username="alice", email=f"{ALICE_MARK}@example.com", password="S3cure-pass-1", first_name=ALICE_MARK,
        last_name="Owner", phone="+7 495 123-45-67",
    )  # fmt: skip
    order = Order.objects.create(
        owner=alice, service_id="welding", quantity=3, amount=Decimal("123.45"), comment=ALICE_MARK, material="steel"
    )
    return alice, order


@pytest.fixture
def bob_token(db) -> str:
    bob = User.objects.create_user(username="bob", email="bob@example.com", password="S3cure-pass-1")
    Order.objects.create(owner=bob, service_id="welding", quantity=1)  # bob has data of his own
    return token_for(bob)


def call(case, token: str):
    """Send ``case`` as bob; skip bodies a form encoding cannot carry (see the module docstring)."""
    if case.media_type and "json" not in case.media_type and not _form_encodable(case.body):
        reject()
    return case.call(headers={"Authorization": f"Bearer {token}"})


def _form_encodable(body) -> bool:
    return isinstance(body, dict) and all(isinstance(value, str | int | float) for value in body.values())


def snapshot(alice: User, order: Order) -> tuple[dict, dict]:
    return (
        model_to_dict(User.objects.get(pk=alice.pk)),
        model_to_dict(Order.objects.get(pk=order.pk)),
    )


@schema.parametrize()
@FUZZ
def test_no_server_errors_and_answers_match_the_schema(case, bob_token):
    response = call(case, bob_token)

    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@FUZZ
def test_no_request_of_bob_reads_or_changes_alice_data(case, alice_data, bob_token):
    alice, order = alice_data
    before = snapshot(alice, order)
    if "{id}" in case.path:
        case.path_parameters = {**(case.path_parameters or {}), "id": order.pk}

    response = call(case, bob_token)

    assert response.status_code < 500, response.text[:500]
    if "{id}" in case.path:
        what = f"{case.method} {case.formatted_path}: {response.status_code}"
        if case.method in ("GET", "PUT", "PATCH") and "Authorization" not in get_exclude_headers(case):
            assert response.status_code == 404, what  # as if her order did not exist
        else:  # a method the path does not have (405), no token at all (401), OPTIONS (metadata only)
            assert response.status_code in (401, 404, 405) or case.method == "OPTIONS", what
    assert ALICE_MARK not in response.text
    assert "123-45-67" not in response.text
    assert snapshot(alice, order) == before
