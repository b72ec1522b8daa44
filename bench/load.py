"""Load: concurrent clients on the whole API while the embedding worker runs, then a check that
every write the clients were told succeeded is in the database.

    uv run python bench/load.py [--clients 8] [--seconds 60] [--stub-latency 0]
                                [--mix search=35,ask=15,append=30,ingest=8,dispatch=12]

Processes, all on 127.0.0.1: gunicorn (bench/_http.py's api_server: 2 workers × 4 threads,
`KIOKU_DB_POOL=8`), a django-q2 cluster (`manage.py qcluster`, `KIOKU_Q_WORKERS` workers, with
the schedules `./scripts/run` syncs) and the OpenAI-compatible stub in a process of its own
(support/openai_stub.py) as the embedding and chat provider of both. Database
`kioku_bench_load`; every row the run writes carries its run id, so runs can follow each other
on the same database and only the run's own rows are checked.

Set-up: a small corpus of manuals (stable URIs: re-posting them writes nothing), technicians
for the dispatch flow, and one write-scope API key per client (each client is a bot of its
own). Then each client loops until `--seconds` have passed, picking an operation by the mix:

- search: POST /search, hybrid, keyword or vector, English, Chinese or Japanese queries;
- ask: POST /ask (the stub is the chat model);
- append: POST /sessions/{key}/messages, 1–3 messages with external ids over the client's
  sessions; one append in ten re-sends the previous batch as a bot's retry does (all duplicates);
- ingest: POST /sources, a new manual of 2–8 KB, or a new text for one the client posted before;
  the worker embeds the chunks meanwhile;
- dispatch: POST /problem-cards (every other one with "diagnose": true), POST /service-orders,
  assign, en_route, on_site, completed (which resolves the card into a `case` source).

Printed: requests/s overall, count, p50 and p95 per operation, and every non-2xx answer with its
body (429 included: the server's KIOKU_API_RATE is set far above what the clients send). After
the run, once the worker has drained, the check: every appended message stored once, every
ingested source with the chunk count its last answer gave, all embedded in the active space from
their current text, every card, order and order step present, every answer stored. The exit status is 1 if any
request failed or anything is missing. Nothing is timed as pass/fail.
"""

import argparse
import collections
import http.client
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _http import ApiClient, api_server, wait_ready, worker_cluster  # noqa: E402
from _setup import django_setup  # noqa: E402
from ingest import EN_WORDS, JA, ZH, generate_document  # noqa: E402
from sessions import pct  # noqa: E402

DATABASE = "kioku_bench_load"
AREA = "Taipei Da'an"
BRANDS = ["Kagiya", "Benkei", "Akane"]
SYMPTOMS = ["error_code", "battery", "wont_lock", "keypad", "noise"]
SEED_DOCUMENTS = 12
# Any other answer is an error: the clients send only valid requests, and their keys are not
# meant to be throttled (a 429 counts too).
OK = range(200, 300)


@dataclass
class Ledger:
    """What the clients were told succeeded, to check against the database afterwards."""

    messages: set[tuple[str, str]] = field(default_factory=set)  # (session key, external id)
    duplicates_answered: int = 0  # retried messages the API reported as duplicates
    sources: dict[str, tuple[int, int]] = field(default_factory=dict)  # uri → (id, chunks)
    cards: set[int] = field(default_factory=set)
    orders: dict[int, int] = field(default_factory=dict)  # order id → order events expected
    completed: set[int] = field(default_factory=set)  # cards whose order completed
    answers: set[int] = field(default_factory=set)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)  # of asks


@dataclass
class Failure:
    operation: str
    request: str
    status: int | str
    body: object


class Run:
    def __init__(self, *, port: int, keys: list[str], run_id: str, technicians: list[int]):
        self.port = port
        self.keys = keys
        self.run_id = run_id
        self.technicians = technicians
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.failures: list[Failure] = []
        self.ledger = Ledger()

    def call(
        self, client: ApiClient, operation: str, method: str, path: str, payload: dict | None
    ) -> dict | None:
        """One timed request; the body on a 2xx, else None (the failure is recorded)."""
        started = time.perf_counter()
        try:
            status, body = client.request(method, path, payload)
        except (OSError, http.client.HTTPException) as exc:  # no answer is a failure too
            client.close()
            status, body = type(exc).__name__, str(exc)
        elapsed = (time.perf_counter() - started) * 1000
        with self.lock:
            self.latencies[operation].append(elapsed)
            if status not in OK:
                self.failures.append(Failure(operation, f"{method} {path}", status, body))
                return None
        return body

    def client(self, index: int, deadline: float, weights: dict[str, int]) -> None:
        rng = random.Random(f"{self.run_id}-{index}")
        client = ApiClient(self.port, self.keys[index])
        operations = {
            "search": self.search,
            "ask": self.ask,
            "append": self.append,
            "ingest": self.ingest,
            "dispatch": self.dispatch,
        }
        names = list(weights)
        state = {"counter": 0, "last_append": None, "uris": []}
        while time.monotonic() < deadline:
            name = rng.choices(names, weights=[weights[n] for n in names])[0]
            operations[name](client, rng, index, state)
        client.close()

    # --- operations ------------------------------------------------------------------------

    def search(self, client: ApiClient, rng: random.Random, index: int, state: dict) -> None:
        mode = rng.choice(["hybrid", "hybrid", "keyword", "vector"])
        payload = {"query": _query(rng), "mode": mode, "top_k": rng.choice([5, 10])}
        if rng.random() < 0.2:
            payload["filters"] = {"source_type": "manual"}
        self.call(client, f"search {mode}", "POST", "/api/v1/search", payload)

    def ask(self, client: ApiClient, rng: random.Random, index: int, state: dict) -> None:
        body = self.call(client, "ask", "POST", "/api/v1/ask", {"question": _question(rng)})
        if body is not None:
            with self.lock:
                self.ledger.answers.add(body["id"])
                self.ledger.outcomes[body["outcome"]] += 1

    def append(self, client: ApiClient, rng: random.Random, index: int, state: dict) -> None:
        if state["last_append"] is not None and rng.random() < 0.1:
            key, messages = state["last_append"]  # a bot's retry: nothing new is stored
            body = self.call(
                client, "append (retry)", "POST", f"/api/v1/sessions/{key}/messages",
                {"messages": messages},
            )  # fmt: skip
            if body is not None:
                with self.lock:
                    self.ledger.duplicates_answered += len(body["duplicate_external_ids"])
            return
        key = f"load:{self.run_id}:c{index}:s{rng.randrange(4)}"
        messages = []
        for _ in range(rng.randint(1, 3)):
            state["counter"] += 1
            messages.append(
                {
                    "content": f"{_query(rng)} — message {state['counter']} from bot {index}",
                    "author": f"user-{rng.randrange(5)}",
                    "external_id": f"{index}-{state['counter']}",
                }
            )
        body = self.call(
            client, "append", "POST", f"/api/v1/sessions/{key}/messages",
            {"messages": messages, "channel": f"load-{self.run_id}", "context": 10},
        )  # fmt: skip
        if body is not None:
            state["last_append"] = (key, messages)
            with self.lock:
                self.ledger.messages.update((key, m["external_id"]) for m in messages)

    def ingest(self, client: ApiClient, rng: random.Random, index: int, state: dict) -> None:
        if state["uris"] and rng.random() < 0.3:
            uri = rng.choice(state["uris"])  # a new text for a manual posted before
        else:
            uri = f"load://{self.run_id}/c{index}/{len(state['uris'])}"
            state["uris"].append(uri)
        payload = {
            "title": f"Load manual {uri}",
            "text": generate_document(rng, rng.randint(2_000, 8_000)),
            "format": "markdown",
            "source_type": "manual",
            "uri": uri,
            "metadata": {"brand": rng.choice(BRANDS)},
        }
        body = self.call(client, "ingest", "POST", "/api/v1/sources", payload)
        if body is not None:
            with self.lock:
                self.ledger.sources[uri] = (body["source"]["id"], body["chunks"])

    def dispatch(self, client: ApiClient, rng: random.Random, index: int, state: dict) -> None:
        """One card through a whole visit; stops at the first step that fails."""
        diagnose = rng.random() < 0.5
        card = self.call(
            client, "card create" + (" + diagnose" if diagnose else ""), "POST",
            "/api/v1/problem-cards", _card(rng, self.run_id, diagnose),
        )  # fmt: skip
        if card is None:
            return
        with self.lock:
            self.ledger.cards.add(card["id"])
        start = datetime.now(UTC) + timedelta(hours=rng.randint(1, 48))
        order = self.call(
            client, "order create", "POST", "/api/v1/service-orders",
            {
                "problem_card_id": card["id"],
                "scheduled_start": start.isoformat(),
                "scheduled_end": (start + timedelta(hours=2)).isoformat(),
            },
        )  # fmt: skip
        if order is None:
            return
        order_id = order["id"]
        with self.lock:
            self.ledger.orders[order_id] = 1
        steps = [
            ("order assign", "assign", {"technician_id": rng.choice(self.technicians)}),
            ("order step", "transition", {"to": "en_route", "eta": start.isoformat()}),
            ("order step", "transition", {"to": "on_site"}),
            (
                "order complete",
                "transition",
                {"to": "completed", "work_done": "Replaced the battery pack and reset the "
                 "controller; E-21 cleared.", "parts_used": "battery pack"},
            ),
        ]  # fmt: skip
        for operation, action, payload in steps:
            payload = {**payload, "version": order["version"]}
            order = self.call(
                client, operation, "POST", f"/api/v1/service-orders/{order_id}/{action}", payload
            )
            if order is None:
                return
            with self.lock:
                self.ledger.orders[order_id] += 1
        with self.lock:
            self.ledger.completed.add(card["id"])


# --- generated requests ------------------------------------------------------------------------


def _query(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return " ".join(rng.sample(EN_WORDS, rng.randint(2, 4)))
    if roll < 0.7:
        return f"error E-{rng.randint(1, 50):02d} {rng.choice(EN_WORDS)}"
    start = rng.randrange(len(ZH) - 4)
    if roll < 0.85:
        return ZH[start : start + rng.randint(3, 5)]
    start = rng.randrange(len(JA) - 4)
    return JA[start : start + rng.randint(3, 5)]


def _question(rng: random.Random) -> str:
    return rng.choice(
        [
            f"How do I fix error E-{rng.randint(1, 50):02d} on the keypad?",
            f"What should I check when the {rng.choice(EN_WORDS)} {rng.choice(EN_WORDS)} fails?",
            "電池沒電怎麼辦？",
            "暗証番号を初期設定に戻すには？",
        ]
    )


def _card(rng: random.Random, run_id: str, diagnose: bool) -> dict:
    symptom = rng.choice(SYMPTOMS)
    return {
        "brand": rng.choice(BRANDS),
        "model": f"KG-{rng.randint(1, 4)}00",
        "symptom": symptom,
        "error_code": f"E-{rng.randint(1, 50):02d}" if symptom == "error_code" else "",
        "description": f"The {rng.choice(EN_WORDS)} {rng.choice(EN_WORDS)} stopped working.",
        "customer": {
            "name": f"load-{run_id}",
            "address": "No. 1, Sec. 3, Xinyi Rd., Da'an Dist., Taipei",
            "service_area": AREA,
        },
        "diagnose": diagnose,
    }


# --- set-up, drain and check ---------------------------------------------------------------------


def seed(client: ApiClient, process) -> list[int]:
    """The manuals search and ask find (stable URIs: re-posting unchanged text writes nothing)
    and three technicians; returns the technicians' ids."""
    rng = random.Random(7)
    for n in range(SEED_DOCUMENTS):
        payload = {
            "title": f"Seed manual {n}",
            "text": generate_document(rng, 20_000),
            "format": "markdown",
            "source_type": "manual",
            "uri": f"load-seed://{n}",
            "metadata": {"brand": BRANDS[n % len(BRANDS)]},
        }
        if n == 0:
            wait_ready(process, client, "/api/v1/sources", payload)
        else:
            _must(client.post("/api/v1/sources", payload), "seed manual")
    technicians = []
    for name in ("Load Chen", "Load Lin", "Load Wang"):
        body = _must(
            client.post(
                "/api/v1/technicians",
                {
                    "name": name,
                    "service_areas": [AREA],
                    "daily_capacity": 50,
                    "skills": [{"brand": brand, "level": 3} for brand in BRANDS],
                },
            ),
            "technician",
        )
        technicians.append(body["id"])
    return technicians


def _must(answer: tuple[int, dict], what: str) -> dict:
    status, body = answer
    if status not in OK:
        raise RuntimeError(f"set-up failed ({what}): {status} {body}")
    return body


def unembedded(run_id: str) -> dict[str, int]:
    """Rows of this run (and the seed) the worker still owes a vector, by kind."""
    from dispatch.models import ProblemCard
    from knowledge.models import KnowledgeChunk

    chunks = KnowledgeChunk.objects.filter(
        source__uri__regex=rf"^(load://{run_id}/|load-seed://|dispatch://)"
    ).exclude(embedding_status="done")
    cards = ProblemCard.objects.filter(customer_name=f"load-{run_id}").exclude(
        embedding_status="done"
    )
    return {"chunks": chunks.count(), "cards": cards.count()}


def drain(run_id: str, timeout: float) -> float:
    """Seconds until the worker has embedded every row of the run (or `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not any(unembedded(run_id).values()):
            break
        time.sleep(0.5)
    return time.monotonic() - started


def verify(run: Run) -> list[str]:
    """Compare the ledger with the database; print the check; return what is wrong."""
    from django.db.models import Count, F, Q

    from dispatch.models import OrderEvent, ProblemCard, ServiceOrder
    from dispatch.services import case_uri
    from knowledge.embed.spaces import space_state
    from knowledge.models import Answer, KnowledgeChunk, KnowledgeSource
    from sessions_app.models import Message

    ledger, problems = run.ledger, []

    def check(label: str, expected: int, found: int) -> None:
        ok = expected == found
        print(f"  {'✓' if ok else '✗'} {label}: expected {expected:,}, found {found:,}")
        if not ok:
            problems.append(f"{label}: expected {expected}, found {found}")

    stored = set(
        Message.objects.filter(session__key__startswith=f"load:{run.run_id}:").values_list(
            "session__key", "external_id"
        )
    )
    check("messages appended (2xx), each stored once", len(ledger.messages), len(stored))
    check(
        "… of them the very messages acknowledged",
        len(ledger.messages),
        len(stored & ledger.messages),
    )
    print(f"    retries answered as duplicates (not stored again): {ledger.duplicates_answered:,}")

    space = space_state().active
    sources = {uri: source_id for uri, (source_id, _) in ledger.sources.items()}
    chunk_counts = dict(
        KnowledgeSource.objects.filter(pk__in=sources.values())
        .annotate(n=Count("chunks"))
        .values_list("pk", "n")
    )
    check("sources ingested (2xx)", len(sources), len(chunk_counts))
    expected_chunks = sum(chunks for _, chunks in ledger.sources.values())
    check(
        "… chunks, as many as each source's last answer said",
        expected_chunks,
        sum(chunk_counts.get(source_id, 0) for source_id, _ in ledger.sources.values()),
    )
    uris = [f"load://{run.run_id}/", "load-seed://"]
    run_chunks = KnowledgeChunk.objects.filter(
        Q(source_id__in=sources.values()) | Q(source__uri__startswith=uris[1])
        | Q(source__uri__in=[case_uri(ProblemCard(pk=pk)) for pk in ledger.completed])
    )  # fmt: skip
    embedded = run_chunks.filter(
        embedding_status="done",
        embedding_text_hash=F("content_hash"),
        **{f"{space.column}__isnull": False, space.model_column: space.model},
    )
    check(
        f"… chunks of those, the seed and the cases embedded ({space.model}, current text)",
        run_chunks.count(),
        embedded.count(),
    )
    attempts = collections.Counter(run_chunks.values_list("embedding_attempts", flat=True))
    print(f"    embedding attempts per chunk: {dict(sorted(attempts.items()))}")
    case_uris = [case_uri(ProblemCard(pk=pk)) for pk in ledger.completed]
    _lags("ingested chunks", run_chunks.filter(source_id__in=sources.values()))
    _lags("case chunks", run_chunks.filter(source__uri__in=case_uris))

    cards = ProblemCard.objects.filter(customer_name=f"load-{run.run_id}")
    check(
        "problem cards created (2xx)", len(ledger.cards), cards.filter(pk__in=ledger.cards).count()
    )
    check("… and no other card of the run", len(ledger.cards), cards.count())
    check(
        "… cards embedded (current text)",
        len(ledger.cards),
        cards.filter(
            embedding_status="done",
            embedding_text_hash=F("search_text_hash"),
            **{f"{space.column}__isnull": False},
        ).count(),
    )
    _lags("cards", cards)
    orders = ServiceOrder.objects.filter(card__customer_name=f"load-{run.run_id}")
    check("service orders created (2xx)", len(ledger.orders), orders.count())
    events = dict(
        OrderEvent.objects.filter(order__in=orders)
        .values_list("order_id")
        .annotate(n=Count("id"))
        .values_list("order_id", "n")
    )
    check(
        "… order events (create, assign, steps answered 2xx)",
        sum(ledger.orders.values()),
        sum(events.get(order_id, 0) for order_id in ledger.orders),
    )
    check(
        "… orders completed, their cards resolved",
        len(ledger.completed),
        cards.filter(
            pk__in=ledger.completed, status="resolved", orders__status="completed"
        ).count(),
    )
    check(
        "… their case sources",
        len(ledger.completed),
        KnowledgeSource.objects.filter(uri__in=case_uris).count(),
    )
    check(
        "answers stored (2xx asks)",
        len(ledger.answers),
        Answer.objects.filter(pk__in=ledger.answers).count(),
    )
    return problems


def _lags(label: str, rows) -> None:
    """How long the run's rows waited for their vector: written → embedded."""
    lags = [
        (embedded - created).total_seconds()
        for created, embedded in rows.filter(embedded_at__isnull=False).values_list(
            "created_at", "embedded_at"
        )
    ]
    if lags:
        print(
            f"    written → embedded, {label}: p50 {pct(lags, 0.5):.1f} s, "
            f"p95 {pct(lags, 0.95):.1f} s, max {max(lags):.1f} s"
        )


def report(run: Run, seconds: float) -> None:
    total = sum(len(samples) for samples in run.latencies.values())
    print(f"\n{total:,} requests in {seconds:.1f} s: {total / seconds:.1f} requests/s")
    print(f"  {'operation':<26}{'count':>7}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}")
    for operation in sorted(run.latencies):
        samples = run.latencies[operation]
        print(
            f"  {operation:<26}{len(samples):>7,}{len(samples) / seconds:>8.1f}"
            f"{pct(samples, 0.5):>9.1f}{pct(samples, 0.95):>9.1f}"
        )
    print(f"  ask outcomes: {dict(run.ledger.outcomes)}")
    print(f"errors (non-2xx or no answer): {len(run.failures)}")
    for failure in run.failures:
        body = str(failure.body)
        print(f"  {failure.operation}: {failure.request} → {failure.status} {body[:600]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--stub-latency", type=float, default=0.0, help="seconds per stub call")
    parser.add_argument("--mix", default="search=35,ask=15,append=30,ingest=8,dispatch=12")
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server and the worker, e.g. KIOKU_DB_POOL=4 (repeatable)",
    )
    args = parser.parse_args()
    weights = {name: int(n) for name, n in (part.split("=") for part in args.mix.split(","))}

    django_setup(DATABASE)
    from _stub_process import RemoteStub

    from core.schedules import schedules_sync
    from core.services import api_key_create

    schedules_sync()  # the sweepers run as under ./scripts/run
    run_id = uuid.uuid4().hex[:8]
    keys = [
        api_key_create(name=f"load-{run_id}-{n}", scopes=["write"])[1] for n in range(args.clients)
    ]
    stub = RemoteStub(latency=args.stub_latency)
    env = {
        "OPENAI_API_KEY": stub.api_key,
        "OPENAI_BASE_URL": stub.base_url,
        "LOG_LEVEL": "WARNING",
        **dict(item.split("=", 1) for item in args.env),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="kioku-load-"))
    print(
        f"run {run_id}: {args.clients} clients × {args.seconds:g} s, mix {weights}, stub latency "
        f"{args.stub_latency:g} s, settings {args.env or 'default'}; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; worker log {log_dir / 'qcluster.log'}",
        flush=True,
    )
    try:
        with (
            api_server(env) as (process, port),
            worker_cluster(log_dir / "qcluster.log", env) as cluster,
        ):
            probe = ApiClient(port, keys[0], timeout=60)
            technicians = seed(probe, process)
            probe.close()
            seeded = drain(run_id, args.drain_timeout)
            print(f"seed corpus embedded after {seeded:.1f} s", flush=True)
            run = Run(port=port, keys=keys, run_id=run_id, technicians=technicians)
            deadline = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=run.client, args=(n, deadline, weights))
                for n in range(args.clients)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            report(run, elapsed)
            drained = drain(run_id, args.drain_timeout)
            left = unembedded(run_id)
            print(
                f"\nworker drained {drained:.1f} s after the clients stopped"
                + (f" (still owed: {left})" if any(left.values()) else "")
                + f"; worker {'running' if cluster.poll() is None else 'EXITED'}, "
                f"load average {os.getloadavg()[0]:.2f}"
            )
            print("check:")
            problems = verify(run)
    finally:
        stub.stop()
    failed = bool(run.failures or problems)
    print(
        f"\n{'FAILED' if failed else 'OK'}: {len(run.failures)} failed requests, "
        f"{len(problems)} missing or wrong"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
