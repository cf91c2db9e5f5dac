"""Users of the shop. Each user becomes a Bitrix24 contact."""

from django.contrib.auth.models import AbstractUser
from django.db import models

from accounts.validators import PHONE_MAX_LENGTH, PhoneValidator


class User(AbstractUser):
    """A customer (or staff member). ``bitrix_contact_id`` is written by the worker."""

    email = models.EmailField("e-mail address", unique=True)
    phone = models.CharField(max_length=PHONE_MAX_LENGTH, blank=True, validators=[PhoneValidator()])
    bitrix_contact_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)

    # The fields whose change must reach Bitrix (see crmbridge.bitrix.mapping).
    BITRIX_FIELDS = ("first_name", "last_name", "email", "phone")

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.email or self.username
