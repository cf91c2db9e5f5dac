"""``python manage.py bitrix_doctor``: is the Bitrix sync healthy, and if not, why and what to do.

Runs the specification's troubleshooting workflow and monitoring checklist
(``crmbridge.diagnostics.doctor``) and prints one line per check.

Exit code: 0 when nothing FAILs (warnings allowed), 1 when something FAILs;
with ``--strict`` warnings count as failures. Use it as a cron alert or a
readiness probe (add ``--skip-bitrix`` to a probe that runs often, so it does
not spend the portal's rate limit).
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandParser

from crmbridge.diagnostics.config_facts import redis_config, redis_target
from crmbridge.diagnostics.doctor import (
    FAIL,
    OK,
    SKIP,
    WARN,
    DoctorOptions,
    default_stuck_seconds,
    exit_code,
    run_doctor,
)
from crmbridge.redis_io.connection import get_redis


class Command(BaseCommand):
    help = "Check the Bitrix sync end to end and explain what is wrong (exit 1 when a check fails)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the findings as JSON")
        parser.add_argument(
            "--pending-threshold", type=int, default=10, help="backlog (pending + lag) considered high (default 10)"
        )
        parser.add_argument(
            "--stuck-seconds", type=float, default=None,
            help="a pending message idle longer than this is stuck (default max(300, 3 x claim idle))",
        )  # fmt: skip
        parser.add_argument("--skip-bitrix", action="store_true", help="do not call the Bitrix portal")
        parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")

    def handle(self, *args, **options) -> None:
        doctor_options = DoctorOptions(
            pending_threshold=options["pending_threshold"],
            stuck_seconds=options["stuck_seconds"] or default_stuck_seconds(),
            check_bitrix=not options["skip_bitrix"],
        )
        findings = run_doctor(get_redis(), doctor_options)
        code = exit_code(findings, strict=options["strict"])
        if options["json"]:
            self.stdout.write(json.dumps(self._as_json(findings, code), indent=2, default=str))
        else:
            self._print(findings, code)
        if code:
            sys.exit(code)

    def _as_json(self, findings, code: int) -> dict:
        counts = {status: sum(1 for f in findings if f.status == status) for status in (OK, WARN, FAIL, SKIP)}
        overall = "fail" if counts[FAIL] else "warn" if counts[WARN] else "ok"
        return {"status": overall, "exit_code": code, "counts": counts, "checks": [f.as_dict() for f in findings]}

    def _print(self, findings, code: int) -> None:
        where = redis_config()
        self.stdout.write(f"Bitrix sync doctor: Redis {redis_target(where)}, prefix {where['prefix']!r}")
        self.stdout.write(f"Topology: {where['topology']['description']}")
        styles = {OK: self.style.SUCCESS, WARN: self.style.WARNING, FAIL: self.style.ERROR, SKIP: self.style.NOTICE}
        for finding in findings:
            self.stdout.write(
                f"[{styles[finding.status](finding.status.center(4))}] {finding.check}: {finding.summary}"
            )
            if finding.cause:
                self.stdout.write(f"       cause: {finding.cause}")
            if finding.issue:
                self.stdout.write(f"       see:   specification, {finding.issue}")
            if finding.fix:
                self.stdout.write(f"       fix:   {finding.fix}")
        counts = {status: sum(1 for f in findings if f.status == status) for status in (OK, WARN, FAIL, SKIP)}
        summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        self.stdout.write(f"{summary} -> exit {code}")
