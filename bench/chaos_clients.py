"""The API side of ``bench/chaos.py``: customers who register, order and change their minds.

Each client thread plays a few users. A user registers, gets a token, places
orders and changes them and their profile several times, so that the final
check ("the deal has the fields of the order's *latest* state") means
something. Steps are spread over the run's duration, and users arrive over
its first 60%, so that contacts too are created while the faults go on.

What a client does when the web app itself is in trouble:

* a request that failed at the transport level (refused, reset, timed out) is
  retried only if repeating it is harmless: ``PUT`` with absolute values, token
  requests, and registration (a second one is refused as "e-mail taken", which
  the client recognises). ``POST /orders`` is never retried: if the first one
  was committed, a retry would be a real duplicate order. Such a create is
  counted as "ambiguous"; the final check reads the database anyway, so an
  order created without the client knowing is still checked;
* an answer 5xx is a finding of the run (counted and listed), never hidden.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

SERVICES = ["cnc-milling", "cnc-turning", "laser-cutting", "3d-printing", "sheet-metal", "welding"]
MATERIALS = ["", "steel", "aluminium 6061", "ABS", "brass", "титан"]
PASSWORD = "Chaos-pass-9182"
TRANSPORT_RETRIES = 5


class TransportError(Exception):
    """No HTTP answer at all."""


@dataclass
class Tally:
    """Counts shared by all client threads."""

    sent: Counter = field(default_factory=Counter)  # writes the API confirmed, by kind
    requests: int = 0
    api_5xx: list[str] = field(default_factory=list)
    unexpected_4xx: list[str] = field(default_factory=list)
    transport_errors: int = 0
    ambiguous_creates: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            if name in ("transport_errors", "ambiguous_creates", "requests"):
                setattr(self, name, getattr(self, name) + n)
            else:
                self.sent[name] += n

    def finding(self, kind: str, text: str) -> None:
        with self._lock:
            getattr(self, kind).append(text)


@dataclass
class Customer:
    index: int
    steps: list[str]
    arrival: float = 0.0  # seconds into the run: new users keep coming, so contacts meet the faults too
    token: str = ""
    orders: dict[int, str] = field(default_factory=dict)  # order id -> status (as the API answered)
    version: int = 0


class ApiClient:
    """One thread's HTTP session, with the retry rules above."""

    def __init__(self, base_url: str, tally: Tally) -> None:
        self.base = base_url
        self.tally = tally
        self.session = requests.Session()

    def send(self, method: str, path: str, body: dict, *, token: str = "", retry: bool) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        attempts = TRANSPORT_RETRIES if retry else 1
        for attempt in range(attempts):
            self.tally.add("requests")
            try:
                response = self.session.request(method, self.base + path, json=body, headers=headers, timeout=15)
            except requests.RequestException as exc:
                self.tally.add("transport_errors")
                if attempt == attempts - 1:
                    raise TransportError(f"{method} {path}: {type(exc).__name__}") from None
                time.sleep(0.5 * (attempt + 1))
                continue
            if response.status_code >= 500:
                self.tally.finding("api_5xx", f"{method} {path} -> {response.status_code}: {response.text[:200]}")
                if retry and attempt < attempts - 1:
                    time.sleep(0.5 * (attempt + 1))
                    continue
            return response
        raise AssertionError("unreachable")


class ClientThread(threading.Thread):
    """Plays its customers' steps in a random interleaving, paced over ``duration`` seconds."""

    def __init__(self, api: ApiClient, customers: list[Customer], *, duration: float, seed: int) -> None:
        super().__init__(name=f"client-{seed}", daemon=True)
        self.api = api
        self.customers = customers
        self.duration = duration
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._play()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()

    def _play(self) -> None:
        total = sum(len(c.steps) for c in self.customers)
        pace = self.duration / max(total, 1)
        started = time.monotonic()
        done = 0
        while not self.stop_event.is_set():
            waiting = [c for c in self.customers if c.steps]
            if not waiting:
                return
            now = time.monotonic() - started
            arrived = [c for c in waiting if c.arrival <= now]
            if not arrived:
                self.stop_event.wait(min(c.arrival for c in waiting) - now)
                continue
            customer = self.rng.choice(arrived)
            self._step(customer, customer.steps.pop(0))
            done += 1
            ahead = started + done * pace - time.monotonic()
            if ahead > 0:
                self.stop_event.wait(ahead * self.rng.uniform(0.5, 1.5))

    def _step(self, customer: Customer, step: str) -> None:
        try:
            if step == "register":
                self._register(customer)
            elif not customer.token:
                return  # registration failed for good: nothing else this customer can do
            elif step == "order":
                self._create_order(customer)
            elif step == "order_update":
                self._update_order(customer)
            elif step == "profile":
                self._update_profile(customer)
        except TransportError:
            pass  # counted; the run goes on

    # -- steps ------------------------------------------------------------------------------
    def _register(self, customer: Customer) -> None:
        i = customer.index
        body = {"email": f"chaos{i}@example.com", "password": PASSWORD, "first_name": f"Имя{i}",
                "last_name": "Chaos", "phone": f"+7 900 {i:07d}"}  # fmt: skip
        response = self.api.send("POST", "/auth/register", body, retry=True)
        taken = response.status_code == 400 and "email" in _json(response)
        if response.status_code == 201 or taken:  # taken: our earlier attempt went through
            self.api.tally.add("register")
        else:
            self._unexpected(response, "POST /auth/register")
            return
        token = self.api.send("POST", "/auth/token", {"email": body["email"], "password": PASSWORD}, retry=True)
        if token.status_code == 200:
            customer.token = token.json()["token"]
        else:
            self._unexpected(token, "POST /auth/token")

    def _create_order(self, customer: Customer) -> None:
        # No amount: the price is set by staff only (issue 12); customers sending one get a 400.
        body = {"service_id": self.rng.choice(SERVICES), "quantity": self.rng.randint(1, 50),
                "material": self.rng.choice(MATERIALS)}  # fmt: skip
        try:
            response = self.api.send("POST", "/orders", body, token=customer.token, retry=False)
        except TransportError:
            self.api.tally.add("ambiguous_creates")
            raise
        if response.status_code == 201:
            customer.orders[response.json()["id"]] = response.json()["status"]
            self.api.tally.add("order")
        elif response.status_code < 500:
            self._unexpected(response, "POST /orders")

    def _update_order(self, customer: Customer) -> None:
        open_orders = [pk for pk, status in customer.orders.items() if status in ("new", "confirmed")]
        if not open_orders:
            return self._update_profile(customer)
        pk = self.rng.choice(open_orders)
        customer.version += 1
        body = self._order_change(customer.version)
        response = self.api.send("PUT", f"/orders/{pk}", body, token=customer.token, retry=True)
        if response.status_code == 200:
            customer.orders[pk] = response.json()["status"]
            self.api.tally.add("order_update")
        elif response.status_code < 500:
            self._unexpected(response, f"PUT /orders/{pk} {body}")

    def _order_change(self, version: int) -> dict:
        change = self.rng.choice(["quantity", "comment", "all", "cancel"] if version > 3 else
                                 ["quantity", "comment", "all"])  # fmt: skip
        if change == "cancel":
            return {"status": "cancelled"}
        body: dict = {}
        if change in ("quantity", "all"):
            body["quantity"] = self.rng.randint(1, 500)
        if change in ("comment", "all"):
            body["comment"] = f"change {version}: {self.rng.choice(['срочно', 'no rush', 'call first', ''])}"
            body["material"] = self.rng.choice(MATERIALS)
        return body

    def _update_profile(self, customer: Customer) -> None:
        customer.version += 1
        i, v = customer.index, customer.version
        body = self.rng.choice([
            {"first_name": f"Имя{i}-{v}"},
            {"last_name": f"Chaos-{v}", "phone": f"+7 901 {i:04d}{v % 1000:03d}"},
            {"phone": ""},  # a cleared phone: the contact's phone entry must go
            {"email": f"chaos{i}-v{v}@example.com"},
        ])  # fmt: skip
        response = self.api.send("PUT", "/profile", body, token=customer.token, retry=True)
        if response.status_code == 200:
            self.api.tally.add("profile")
        elif response.status_code < 500:
            self._unexpected(response, f"PUT /profile {body}")

    def _unexpected(self, response: requests.Response, what: str) -> None:
        if response.status_code < 500:
            self.api.tally.finding("unexpected_4xx", f"{what} -> {response.status_code}: {response.text[:200]}")


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def customer_steps(rng: random.Random, *, orders: int, order_updates: int, profile_updates: int) -> list[str]:
    """register, a first order, then the rest shuffled (an order update needs an order: the first one)."""
    rest = ["order"] * (orders - 1) + ["order_update"] * (orders * order_updates) + ["profile"] * profile_updates
    rng.shuffle(rest)
    return ["register", "order", *rest]


def start_clients(
    base_url: str, *, users: int, orders_per_user: int, threads: int, duration: float, seed: int, tally: Tally
) -> list[ClientThread]:
    rng = random.Random(seed)
    customers = [
        Customer(i, customer_steps(rng, orders=orders_per_user, order_updates=3, profile_updates=3),
                 arrival=duration * 0.6 * (i - 1) / users)
        for i in range(1, users + 1)
    ]  # fmt: skip
    clients = [
        ClientThread(ApiClient(base_url, tally), customers[n::threads], duration=duration, seed=seed * 100 + n)
        for n in range(threads)
    ]
    for client in clients:
        client.start()
    return clients
