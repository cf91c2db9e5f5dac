"""Fixtures for the hardening tests (issue 12)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission


def grant(user, *codenames: str):
    """Give ``user`` the model permissions ``app_label.codename`` and return it fresh (permission cache)."""
    for name in codenames:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def bare_staff(db, django_user_model):
    """``is_staff`` and nothing else: the admin shows such a user nothing, and so must the API."""
    return django_user_model.objects.create_user(
        username="dora", email="dora@example.com", password="S3cure-pass-1", is_staff=True
    )
