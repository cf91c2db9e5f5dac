"""Variables for the production-like processes benchmarks start (``DEBUG`` off, issue 12).

* a throwaway ``SECRET_KEY``: without one, DEBUG-off processes refuse to start;
* the rate limits out of the way: one address (the benchmark) registers and signs
  in thousands of customers, which the default limits would answer with 429s.
"""

THROTTLE_SCOPES = ("LOGIN", "LOGIN_FAILURES", "REGISTER", "WEBHOOK_REFUSED", "ADMIN_LOGIN")

BENCH_ENV = {
    "SECRET_KEY": "bench-only-key-not-a-secret-" + "x" * 30,
    **{f"THROTTLE_{scope}_RATE": "10000000/min" for scope in THROTTLE_SCOPES},
}
