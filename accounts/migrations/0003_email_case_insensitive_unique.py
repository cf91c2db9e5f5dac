"""One mailbox, one account: e-mail addresses are unique whatever their letter case (issue 12).

Fails if the table already holds two addresses differing only in case: merge or rename those
accounts first (SELECT lower(email) FROM accounts_user GROUP BY 1 HAVING count(*) > 1).
"""

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_phone_validator"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this e-mail address already exists.",
            ),
        ),
    ]
