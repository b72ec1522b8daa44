"""CPU seconds per process over a stretch of a benchmark, read from /proc (Linux): shows which
process (this one, the stub, PostgreSQL backends) a 2-core machine's time goes to."""

import collections
import os
import time
from contextlib import contextmanager

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _snapshot() -> dict[int, tuple[str, float, float]]:
    """pid → (command line, own CPU seconds, CPU seconds of its children that ended)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        own = (int(fields[11]) + int(fields[12])) / _TICKS
        ended_children = (int(fields[13]) + int(fields[14])) / _TICKS
        found[int(entry)] = (command, own, ended_children)
    return found


def _label(pid: int, command: str) -> str:
    if pid == os.getpid():
        return "benchmark process"
    if command.startswith("postgres:"):
        return "postgres " + " ".join(command.split()[1:3])
    if "openai_stub" in command:
        return "OpenAI stub"
    return command.split(" ")[0].rsplit("/", 1)[-1] or f"pid {pid}"


@contextmanager
def cpu_report(label: str, *, enabled: bool = True):
    """Print CPU seconds by process for the block (when `enabled`)."""
    if not enabled or not os.path.isdir("/proc"):
        yield
        return
    before, started = _snapshot(), time.perf_counter()
    yield
    after, elapsed = _snapshot(), time.perf_counter() - started
    spent: collections.Counter[str] = collections.Counter()
    for pid, (command, own, ended) in after.items():
        _, own_before, ended_before = before.get(pid, (command, 0.0, 0.0))
        spent[_label(pid, command)] += own - own_before
        if ended > ended_before and "postgres" in command and pid != os.getpid():
            # Backends of connections that closed meanwhile (the workers' own connections).
            spent["postgres (connections closed since)"] += ended - ended_before
    spent = collections.Counter({name: s for name, s in spent.items() if s >= 0.05})
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.most_common(6))
    print(f"  CPU seconds in {label} ({elapsed:.1f} s wall, {os.cpu_count()} cores): {parts}")
