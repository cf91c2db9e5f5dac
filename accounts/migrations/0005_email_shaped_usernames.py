"""Usernames with "@" that are not the account's own e-mail get a plain username (issue 19 item 3).

From now on a username with "@" must be the account's own e-mail address
(``User.clean``), and at sign-in an e-mail address names the account that has
it (``accounts.backends``). Accounts from before may hold someone else's
address as their username (registering ``username: "admin@example.com"`` was
possible): such a username could no longer sign in anyway, and it would block
the address's owner from using it as a username. Each one is renamed to the
local part of the account's own e-mail (``jane.doe``, or ``jane.doe-2`` when
taken), as registration derives usernames; the account's e-mail keeps signing
in. Each rename is printed (id and new username) for the operator to pass on.
Usernames equal to the account's own e-mail, in any case, are kept.
"""

import re
import secrets

from django.db import migrations

_UNSAFE = re.compile(r"[^\w.+-]")


def rename_email_shaped_usernames(apps, schema_editor) -> None:
    User = apps.get_model("accounts", "User")
    for user in User.objects.filter(username__contains="@").order_by("id"):
        if user.username.lower() == (user.email or "").lower():
            continue
        user.username = _free_username(User, user.email or user.username)
        user.save(update_fields=["username"])
        print(
            f"\n  accounts: user {user.pk}'s username held an e-mail address that is not its own: now {user.username!r}"
        )


def _free_username(User, email: str) -> str:
    base = _UNSAFE.sub("", email.rsplit("@", 1)[0])[:140] or "user"
    candidate = base
    for n in range(2, 20):
        if not User.objects.filter(username__iexact=candidate).exists():
            return candidate
        candidate = f"{base}-{n}"
    return f"{base}-{secrets.token_hex(3)}"


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_drop_drf_authtoken_tokens")]

    operations = [migrations.RunPython(rename_email_shaped_usernames, migrations.RunPython.noop)]
