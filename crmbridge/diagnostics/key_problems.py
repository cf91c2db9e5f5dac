"""The project's stream keys that hold another type, as status, dashboard and doctor report them.

Readers of the streams (``stream_status``, ``dead_letter_status``) treat such a
key like a missing one, so every other fact is still shown; this module names
the key, its type and the fix (``crmbridge.redis_io.key_types``), with the
``redis-cli`` command for this deployment's Redis.
"""

from __future__ import annotations

import redis

from crmbridge.diagnostics.config_facts import redis_config
from crmbridge.redis_io import streams
from crmbridge.redis_io.key_types import WrongType, wrong_type_keys


def stream_keys() -> list[str]:
    return [*streams.consumed_streams(), streams.dead_letter_stream()]


def key_problems(client: redis.Redis) -> list[WrongType]:
    """The consumed streams and the dead-letter stream whose key is not a stream."""
    return wrong_type_keys(client, stream_keys())


def redis_cli() -> str:
    """``redis-cli`` with this deployment's connection options (never the password: ``--askpass``)."""
    where = redis_config()
    command = f"redis-cli -h {where.get('host') or '127.0.0.1'} -p {where.get('port') or 6379}"
    if where.get("db"):
        command += f" -n {where['db']}"
    if where.get("tls"):
        command += " --tls"
    if where.get("password_set"):
        command += " --askpass"
    return command


def as_dicts(problems: list[WrongType]) -> list[dict]:
    """``[{"key", "type", "expected", "fix"}]`` for the status endpoints and the dashboard."""
    cli = redis_cli()
    return [problem.as_dict(cli) for problem in problems]


def summary(problems: list[WrongType]) -> str:
    return "; ".join(f"{problem.describe()} (fix: {problem.fix(redis_cli())})" for problem in problems)
