"""API tokens moved to django-rest-knox (hashed at rest, issue 12): the old plain-text tokens are dropped.

DRF's ``authtoken_token`` table held every token in clear; its rows cannot be
turned into knox digests meaningfully (a digest of a leaked token is still that
token), so they are deleted with the table: every API client signs in again
(``POST /auth/token``). ``rest_framework.authtoken`` is no longer installed,
so nothing else would ever drop the table.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_email_case_insensitive_unique"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunSQL("DROP TABLE IF EXISTS authtoken_token", reverse_sql=migrations.RunSQL.noop),
    ]
