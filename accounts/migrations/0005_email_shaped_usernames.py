"""Usernames with "@" that are not the account's own e-mail get a plain username (issue 19 item 3).

From now on a username with "@" must be the account's own e-mail address
(``User.clean``), and at sign-in an e-mail address names the account that has
it (``accounts.backends``). Accounts from before may hold someone else's
address as their username (registering ``username: "admin@example.com"`` was
possible): a username that is ANOTHER account's e-mail could no longer sign
in anyway (the e-mail wins) and would keep the address's owner from using it.
Only those are renamed, to the local part of the account's own e-mail
(``jane.doe``, or ``jane.doe-2`` when taken), as registration derives
usernames; the account's e-mail keeps signing in. Each rename is printed (id,
old and new username) for the operator to pass on: the reverse migration does
not restore them. A username with "@" that is nobody's e-mail still signs in
(an account may have no e-mail to sign in with) and is left alone; so are
usernames equal to the account's own e-mail, in any case.
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
        if not User.objects.filter(email__iexact=user.username).exclude(pk=user.pk).exists():
            continue  # nobody else's address: it still signs this account in
        old = user.username
        user.username = _free_username(User, user.email or user.username)
        user.save(update_fields=["username"])
        print(f"\n  accounts: user {user.pk}'s username {old!r} was another account's e-mail: now {user.username!r}")


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
