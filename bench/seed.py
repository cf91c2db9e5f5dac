"""Fill a bench database with N users and N orders and queue their operations.

Run by the benchmarks with the stack's environment:
``python bench/seed.py N`` -> N users (one order each), 2N operations in the stream.
Rows are bulk-inserted (no signals); the operations are queued in chunks the
way ``bitrix_resync`` does, straight into the stream.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrixsync.settings")

import django

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402

from accounts.models import User  # noqa: E402
from crmbridge.publishing.messages import Operation  # noqa: E402
from crmbridge.redis_io import streams  # noqa: E402
from crmbridge.redis_io.connection import get_redis  # noqa: E402
from orders.models import Order  # noqa: E402

CHUNK = 2000


def seed(n: int, *, offset: int = 0) -> None:
    password = make_password("bench-pass-1")
    for start in range(offset, offset + n, CHUNK):
        stop = min(start + CHUNK, offset + n)
        users = User.objects.bulk_create(
            [
                User(username=f"u{i}", email=f"u{i}@example.com", password=password, first_name=f"Name{i}",
                     last_name="Бенч", phone=f"+7 900 {i:07d}")
                for i in range(start, stop)
            ]
        )  # fmt: skip
        orders = Order.objects.bulk_create(
            [Order(owner=u, service_id="cnc-milling", quantity=1 + i % 9, amount=100 + i) for i, u in enumerate(users)]
        )
        pipe = get_redis().pipeline(transaction=False)
        for user, order in zip(users, orders, strict=True):
            pipe.xadd(streams.operations_stream(), Operation("contact", "create", user.pk, src="resync").to_fields())
            pipe.xadd(streams.operations_stream(), Operation("deal", "create", order.pk, src="resync").to_fields())
        pipe.execute()


if __name__ == "__main__":
    seed(int(sys.argv[1]), offset=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
