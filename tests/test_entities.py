"""The entity registry names real models, fields and CRM methods."""

import pytest

from crmbridge import entities
from crmbridge.models import SyncRecord


@pytest.mark.parametrize("entity", entities.ENTITIES.values(), ids=entities.NAMES)
def test_each_entity_names_fields_its_model_has(entity):
    model = entity.model()
    model._meta.get_field(entity.bitrix_id_field)
    model._meta.get_field(entity.since_field)
    assert entities.for_model(model) is entity
    assert entity.name in SyncRecord.Entity.values


def test_origin_ids_and_methods_come_from_the_registry():
    assert entities.DEAL.origin_id(12) == "order-12"
    assert entities.CONTACT.origin_id(5) == "user-5"
    assert entities.DEAL.method("add") == "crm.deal.add"
    assert entities.get("contact").method("list") == "crm.contact.list"


def test_a_model_that_is_not_synced_is_refused():
    with pytest.raises(LookupError):
        entities.for_model(SyncRecord)
