"""``ContactMatcher``'s refusal message (the rest of contact matching: tests/worker/test_existing_customers.py)."""

from __future__ import annotations

import pytest

from crmbridge.bitrix.contact_match import FINDBYCOMM, ContactMatcher, Customer
from crmbridge.bitrix.errors import BitrixError, ErrorKind


@pytest.mark.parametrize(("setting", "named"), [((), "off"), (("phone",), "phone")])
def test_a_refused_lookup_names_the_setting_as_it_is(sandbox, client, settings, setting, named):
    """Found by mutation testing: a matcher given its modes (a script, the bench) while the setting says
    otherwise names the setting's value, ``off`` when it is empty."""
    settings.BITRIX_CONTACT_MATCH = setting
    sandbox.set_faults(denied_methods=[FINDBYCOMM])

    with pytest.raises(BitrixError) as caught:
        ContactMatcher(client, modes=("email",)).match([Customer(1, email="jo@example.com")])

    assert (caught.value.kind, caught.value.method) == (ErrorKind.CONFIG, FINDBYCOMM)
    assert caught.value.description.startswith(
        f"BITRIX_CONTACT_MATCH={named}: the webhook may not call crm.duplicate.findbycomm ("
    )
