"""Sessions benchmark: messages appended per second through the HTTP API.

    uv run python bench/sessions.py [--single 4000] [--batched 20000] [--batch 20] [--clients 8]

A real gunicorn (2 workers × 4 threads, `KIOKU_DB_POOL=8`) on 127.0.0.1 and a free port, against
the separate database `kioku_bench_sessions`; stopped at the end. Several client threads, each
with its own keep-alive connection and its own sessions (a bot serving several channels), POST
`/api/v1/sessions/{key}/messages`:

1. single appends: one message per request (every message with an external_id, as a bot sends);
1b. single appends again with wrk (a C load generator, if installed), so that the client takes
   little of the two cores; the stored messages are counted in the database afterwards;
2. batched appends: `--batch` messages per request;
3. a retry pass: the same single messages again, all answered as duplicates (nothing stored).

Each run prints messages/s (wall clock over all clients) and request latency p50/p95. The target
is ≥ 500 appended messages/s. The client threads run on the same 2 cores as the server, so the
figures are a lower bound; the load average is printed because the machine is shared.
"""

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _http import ApiClient, api_server, wait_ready  # noqa: E402
from _setup import django_setup  # noqa: E402

DATABASE = "kioku_bench_sessions"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    port: int,
    key: str,
    *,
    run_id: str,
    messages: int,
    batch: int,
    clients: int,
    sessions_per_client: int = 4,
) -> dict:
    """Each client sends messages/clients messages in requests of `batch`, round-robin over its
    own sessions. Returns messages/s, stored and duplicate counts and latency percentiles."""
    per_client = messages // clients
    latencies: list[float] = []
    stored = [0] * clients
    duplicates = [0] * clients
    errors: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        client = ApiClient(port, key)
        mine: list[float] = []
        sent = 0
        request = 0
        while sent < per_client:
            size = min(batch, per_client - sent)
            session = f"bench:{run_id}:c{index}:s{request % sessions_per_client}"
            payload = {
                "messages": [
                    {
                        "content": f"Message {sent + n} from client {index}: the KG-200 shows E-21.",
                        "author": f"user-{index}",
                        "external_id": f"{index}-{sent + n}",
                    }
                    for n in range(size)
                ],
                "context": 10,
            }
            started = time.perf_counter()
            status, body = client.post(f"/api/v1/sessions/{session}/messages", payload)
            mine.append((time.perf_counter() - started) * 1000)
            if status not in (200, 201):
                with lock:
                    errors.append(f"{status}: {body}")
                break
            stored[index] += body["accepted"]
            duplicates[index] += len(body["duplicate_external_ids"])
            sent += size
            request += 1
        client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    total = per_client * clients
    return {
        "messages": total,
        "stored": sum(stored),
        "duplicates": sum(duplicates),
        "seconds": elapsed,
        "messages_per_s": total / elapsed,
        "requests": len(latencies),
        "p50": pct(latencies, 0.50),
        "p95": pct(latencies, 0.95),
    }


def run_wrk(port: int, key: str, *, run_id: str, seconds: int, connections: int) -> dict | None:
    """Single appends driven by wrk (a C load generator: the client takes little of the two
    cores the server runs on). None when wrk is not installed (`apt-get install wrk`)."""
    if shutil.which("wrk") is None:
        return None
    from django.db import connection

    command = [
        "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(Path(__file__).with_name("sessions_append.lua")),
        f"http://127.0.0.1:{port}", "--", run_id,
    ]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(
        command, env={**os.environ, "KIOKU_BENCH_KEY": key}, capture_output=True, text=True
    ).stdout
    elapsed = time.perf_counter() - started
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    figures = dict(item.split("=") for item in line.split()[1:])
    requests = int(figures["requests"])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM sessions_app_message m JOIN sessions_app_chatsession s "
            "ON s.id = m.session_id WHERE s.key LIKE %s",
            [f"bench:{run_id}:%"],
        )
        stored = cursor.fetchone()[0]
    failed = int(figures["non2xx"]) + int(figures["errors"])
    return {
        "messages": requests,
        "stored": stored,
        "duplicates": 0,
        "failed": failed,
        "seconds": elapsed,
        "messages_per_s": requests / elapsed,
        "requests": requests,
        "p50": float(figures["p50"]),
        "p95": float(figures["p95"]),
    }


def show(label: str, result: dict) -> None:
    print(
        f"{label:<34} {result['messages']:>6} msgs in {result['requests']:>5} requests, "
        f"{result['seconds']:6.1f} s → {result['messages_per_s']:7.0f} msgs/s; "
        f"stored {result['stored']}, duplicates {result['duplicates']}; "
        f"request p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--single", type=int, default=4000, help="messages sent one per request")
    parser.add_argument("--batched", type=int, default=20000, help="messages sent in batches")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--wrk-seconds", type=int, default=15)
    args = parser.parse_args()

    django_setup(DATABASE)
    from core.services import api_key_create

    _, key = api_key_create(name=f"bench-sessions-{uuid.uuid4().hex[:8]}", scopes=["write"])
    run_id = uuid.uuid4().hex[:6]
    print(f"load average before: {os.getloadavg()[0]:.2f} (2-core machine, shared)")
    with api_server() as (process, port):
        probe = ApiClient(port, key)
        wait_ready(
            process,
            probe,
            "/api/v1/sessions/bench:warmup/messages",
            {"messages": [{"content": "hi"}]},
        )
        probe.close()
        # Warm every worker thread's connection and code paths.
        run(port, key, run_id=f"{run_id}w", messages=400, batch=1, clients=args.clients)
        single = run(port, key, run_id=run_id, messages=args.single, batch=1, clients=args.clients)
        show(f"1. single appends, {args.clients} clients", single)
        by_wrk = run_wrk(port, key, run_id=f"{run_id}k", seconds=args.wrk_seconds, connections=8)
        if by_wrk is None:
            print("1b. (wrk not installed: apt-get install wrk for a C client)")
        else:
            show("1b. single appends, wrk, 8 conns", by_wrk)
            # Requests still in flight when wrk stops are stored but not counted by wrk.
            in_flight = by_wrk["stored"] - by_wrk["requests"]
            if by_wrk["failed"] or not 0 <= in_flight <= 8:
                raise RuntimeError(f"wrk run lost or failed requests: {by_wrk}")
        retry = run(port, key, run_id=run_id, messages=args.single, batch=1, clients=args.clients)
        show("2. same messages again (retries)", retry)
        batched = run(
            port,
            key,
            run_id=f"{run_id}b",
            messages=args.batched,
            batch=args.batch,
            clients=max(1, args.clients // 2),
        )
        show(f"3. batches of {args.batch}, {max(1, args.clients // 2)} clients", batched)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    target = 500
    best_single = max(single["messages_per_s"], (by_wrk or single)["messages_per_s"])
    print(f"Target ≥ {target} appended msgs/s: batched {batched['messages_per_s']:.0f} "
          f"({'meets' if batched['messages_per_s'] >= target else 'misses'}), one message per "
          f"request {best_single:.0f} ({'meets' if best_single >= target else 'misses'}).")  # fmt: skip


if __name__ == "__main__":
    main()
