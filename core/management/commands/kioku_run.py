import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from config import embedded_db
from core.demo import DEV_ADMIN_USERNAME, demo_load_if_empty, demo_users_ensure, dev_admin_ensure


class Command(BaseCommand):
    help = (
        "Set up and run Kioku for development: migrate, create the dev admin, load demo data when "
        "empty, then run the web server and the django-q2 worker together until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("KIOKU_BIND", "127.0.0.1:8000"))
        parser.add_argument("--no-worker", action="store_true", help="Run the web server only.")
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(
        self, *args: str, bind: str, no_worker: bool, web_workers: int, **options: Any
    ) -> None:
        embedded = not settings.DATABASE_URL
        started_db = embedded and not embedded_db.status()["running"]
        try:
            self._prepare()
            self._serve(bind=bind, with_worker=not no_worker, web_workers=web_workers)
        finally:
            if started_db:
                # Close our own connections first so the server can stop quickly.
                from django.db import connections

                connections.close_all()
                embedded_db.stop()
                self.stdout.write("Embedded PostgreSQL stopped.")

    def _prepare(self) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("sync_schedules", verbosity=0)
        password = dev_admin_ensure(password=os.environ.get("KIOKU_ADMIN_PASSWORD") or None)
        if password:
            self.stdout.write(
                self.style.WARNING(
                    "Created the development admin — these credentials are shown only now:\n"
                    f"    username: {DEV_ADMIN_USERNAME}\n    password: {password}\n"
                    "Change the password in the admin, or create your own with `manage.py createsuperuser`."
                )
            )
        users = demo_users_ensure()
        if users:
            self.stdout.write(
                "Created demo users, one per group (viewer, curator, dispatcher) — passwords shown "
                "only now:\n"
                + "\n".join(f"    {username}: {password}" for username, password in users.items())
            )
        for line in demo_load_if_empty():
            self.stdout.write(f"Demo data loaded — {line}")

    def _serve(self, *, bind: str, with_worker: bool, web_workers: int) -> None:
        web = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            bind,
            "--workers",
            str(web_workers),
            "--threads",
            "4",
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "5",
        ]
        children = {"web": subprocess.Popen(web)}
        if with_worker:
            children["worker"] = subprocess.Popen([sys.executable, "manage.py", "qcluster"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Kioku is running at http://{bind}/ (admin: /admin/, API docs: /api/v1/docs, "
                f"health: /healthz). Press Ctrl-C to stop."
            )
        )
        stop_requested = False

        def request_stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stop_requested
            stop_requested = True

        # Ctrl-C reaches the whole process group: the children start their own graceful
        # shutdown, and this loop stops waiting for them.
        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not stop_requested:
                exited = [name for name, proc in children.items() if proc.poll() is not None]
                if exited:
                    self.stderr.write(f"{', '.join(exited)} exited; stopping the rest.")
                    break
                time.sleep(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_children(children)

    def _stop_children(self, children: dict[str, subprocess.Popen]) -> None:
        self.stdout.write("Stopping web server and worker…")
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, proc in children.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in time; killing it.")
                proc.kill()
                proc.wait()
        self.stdout.write("Stopped.")
