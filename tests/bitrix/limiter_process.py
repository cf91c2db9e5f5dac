"""A separate process using the shared limiter, for ``test_rate_limit``.

    python -m tests.bitrix.limiter_process --redis-url ... --key ... --rate 5 --burst 5 \
        (--start-at <unix time> --webhook <url> --seconds 3 | --acquire-once)

Calls for ``--seconds`` and prints ``{"ok", "limited", "waits"}``; or, with
``--acquire-once``, prints ``{"ready": true}``, waits for a line on stdin,
acquires once and prints ``{"waited"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import redis

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError
from crmbridge.bitrix.rate_limit import RedisRateLimiter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--burst", type=int, required=True)
    parser.add_argument("--start-at", type=float, default=0.0, help="Unix time: start together with the others")
    parser.add_argument("--webhook")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--acquire-once", action="store_true")
    args = parser.parse_args()
    limiter = RedisRateLimiter(redis.Redis.from_url(args.redis_url), rate=args.rate, burst=args.burst, key=args.key)
    if args.acquire_once:
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()
        print(json.dumps({"waited": limiter.acquire()}))
        return
    time.sleep(max(0.0, args.start_at - time.time()))
    print(json.dumps({**call_for(BitrixClient(args.webhook, limiter=limiter), args.seconds), "waits": limiter.waits}))


def call_for(client: BitrixClient, seconds: float) -> dict:
    ok = limited = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.call("profile")
            ok += 1
        except BitrixError as exc:
            if exc.code != "QUERY_LIMIT_EXCEEDED":
                raise
            limited += 1
    return {"ok": ok, "limited": limited}


if __name__ == "__main__":
    main()
