"""Users of the shop. Each user becomes a Bitrix24 contact."""

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

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
        constraints = [
            # One mailbox, one account: "Jane@x.org" and "jane@x.org" are one inbox. The services
            # check first (for a field error); this settles the race between two registrations.
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this e-mail address already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.email or self.username

    def clean(self) -> None:
        """A username with "@" must be this account's own e-mail address (any case).

        Sign-in takes a username or an e-mail (``accounts.backends``): a username that is
        someone else's address would let its holder pass for that person. Runs on
        registration (``full_clean``) and in the admin's user forms.
        """
        super().clean()
        if "@" in self.username and self.username.lower() != (self.email or "").lower():
            raise ValidationError(
                {"username": ValidationError(
                    'A username with "@" must be the account\'s own e-mail address.', code="email_shaped"
                )}
            )  # fmt: skip

    def save(self, *args, **kwargs) -> None:
        # set_password() keeps the raw password in _password until the save: a password
        # change (API, admin, changepassword) revokes every API token of the user.
        password_changed = self._password is not None and self.pk is not None
        super().save(*args, **kwargs)
        if password_changed:
            from accounts.tokens import revoke_all

            revoke_all(self)
