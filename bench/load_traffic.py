"""The load generator of ``bench/load.py``: order creates and edits over HTTP at a steady, open-loop rate.

Open loop: request *i* is due at ``start + i / rate`` whatever happened to the
ones before it, and a pool of client threads sends it. A closed loop (each
client waits for its answer, then sends the next) slows down with the server
and hides exactly the latency a busy server adds ("coordinated omission").
Latency is measured two ways: from sending to the answer (what the server
took) and from the due time to the answer (adds any wait for a free client
thread; the two differ only when the generator itself falls behind, which the
report then shows as late sends).

Why not locust: its users are a closed loop (``constant_throughput`` per user
and a user count), it needs gevent's monkey-patching in the process that also
drives the stack, and the exactly-once check needs every order this run made
(ids and owners), which a plain thread pool keeps in a list.

Each write is either a create (``POST /orders`` by a random customer of the
pool) or, with probability ``edit_share`` once orders exist, an edit of a
random order of this run by its owner (``PUT /orders/<id>``: a new quantity
and comment, so that every edit changes the deal). Nothing is retried: a
``POST`` repeated after a lost answer could be a real second order.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

PASSWORD = "Load-bench-pass-4821"
SERVICES = ["cnc-milling", "cnc-turning", "laser-cutting", "3d-printing", "sheet-metal", "welding"]
LATE_SECONDS = 0.05  # a send this long after its due time means the generator fell behind


@dataclass(frozen=True)
class Sample:
    kind: str  # "create" or "edit"
    due: float  # perf_counter seconds
    sent: float
    answered: float
    status: int  # 0: no HTTP answer
    error: str = ""

    @property
    def latency(self) -> float:
        return self.answered - self.sent

    @property
    def from_due(self) -> float:
        return self.answered - self.due


@dataclass
class Orders:
    """Orders this run created: (id, owner's token), shared by the client threads."""

    made: list[tuple[int, str]] = field(default_factory=list)
    edits: Counter = field(default_factory=Counter)  # order id -> edits the API accepted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, order_id: int, token: str) -> None:
        with self.lock:
            self.made.append((order_id, token))

    def pick(self, rng: random.Random) -> tuple[int, str] | None:
        with self.lock:
            return rng.choice(self.made) if self.made else None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def register_customers(base_url: str, count: int, *, threads: int = 4) -> list[str]:
    """``count`` new customers over the API; their bearer tokens."""

    def register(i: int) -> str:
        body = {"email": f"load{i}@example.com", "password": PASSWORD, "first_name": f"Load{i}",
                "last_name": "Bench", "phone": f"+7 902 {i:07d}"}  # fmt: skip
        answer = requests.post(f"{base_url}/auth/register", json=body, timeout=60)
        if answer.status_code != 201:
            raise RuntimeError(f"register {body['email']}: {answer.status_code} {answer.text[:300]}")
        return answer.json()["token"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(register, range(count)))


class Traffic:
    """Sends writes at a steady rate; keeps every sample and every order it made."""

    def __init__(self, base_url: str, tokens: list[str], *, edit_share: float, threads: int, seed: int) -> None:
        self.base = base_url
        self.tokens = tokens
        self.edit_share = edit_share
        self.threads = threads
        self.rng = random.Random(seed)
        self.orders = Orders()
        self.samples: list[Sample] = []
        self._local = threading.local()
        self._edits = 0
        self._lock = threading.Lock()

    def run(self, *, rate: float, duration: float) -> list[Sample]:
        """``rate`` writes per second for ``duration`` seconds; the samples of this run."""
        count = max(1, round(rate * duration))
        first = len(self.samples)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="load") as pool:
            start = time.perf_counter()
            futures = []
            for i in range(count):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self._write, due))
            for future in futures:
                future.result()  # a bug in the generator fails the run here, not silently
        return self.samples[first:]

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _write(self, due: float) -> None:
        target = self.orders.pick(self.rng) if self.rng.random() < self.edit_share else None
        sent = time.perf_counter()
        try:
            kind, status = self._edit(*target) if target else self._create()
            error = ""
        except requests.RequestException as exc:
            kind, status, error = "edit" if target else "create", 0, type(exc).__name__
        sample = Sample(kind, due, sent, time.perf_counter(), status, error)
        with self._lock:
            self.samples.append(sample)

    def _create(self) -> tuple[str, int]:
        token = self.rng.choice(self.tokens)
        body = {"service_id": self.rng.choice(SERVICES), "quantity": self.rng.randint(1, 50), "comment": "v0"}
        answer = self._session().post(f"{self.base}/orders", json=body, headers=_auth(token), timeout=30)
        if answer.status_code == 201:
            self.orders.add(answer.json()["id"], token)
        return "create", answer.status_code

    def _edit(self, order_id: int, token: str) -> tuple[str, int]:
        with self._lock:
            self._edits += 1
            version = self._edits
        body = {"quantity": self.rng.randint(1, 500), "comment": f"v{version}"}
        answer = self._session().put(f"{self.base}/orders/{order_id}", json=body, headers=_auth(token), timeout=30)
        if answer.status_code == 200:
            with self.orders.lock:
                self.orders.edits[order_id] += 1
        return "edit", answer.status_code


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def summarize(samples: list[Sample], seconds: float) -> dict:
    """Latency percentiles (ms), achieved rate and failures of a list of samples."""
    ok = [s for s in samples if 200 <= s.status < 300]
    return {
        "writes": len(samples),
        "creates": sum(1 for s in ok if s.kind == "create"),
        "edits": sum(1 for s in ok if s.kind == "edit"),
        "rate": len(samples) / seconds if seconds else 0.0,
        "p50": percentile([s.latency for s in ok], 50) * 1000,
        "p99": percentile([s.latency for s in ok], 99) * 1000,
        "max": max((s.latency for s in ok), default=0.0) * 1000,
        "p99_from_due": percentile([s.from_due for s in ok], 99) * 1000,
        "late_sends": sum(1 for s in samples if s.sent - s.due > LATE_SECONDS),
        "failed": [f"{s.kind}: {s.status or s.error}" for s in samples if not 200 <= s.status < 300],
    }
