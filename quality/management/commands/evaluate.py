import sys

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApiError
from quality.models import EvalSet
from quality.report import metrics_table
from quality.runs import eval_run_create, eval_run_execute, run_modes


class Command(BaseCommand):
    help = (
        "Evaluate retrieval (recall@1/3/10, MRR, nDCG@10 per mode and language) and answers "
        "(keywords, citations, refusals) on an evaluation set, store the run and print its table."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--set", dest="set_name", help="Evaluation set name (default: every set)."
        )
        parser.add_argument("--mode", choices=["vector", "keyword", "hybrid", "all"], default="all")
        parser.add_argument(
            "--rerank", action="store_true", help="Rerank hybrid results (KIOKU_RERANKER)."
        )
        parser.add_argument(
            "--no-feedback", action="store_true", help="Rank without outcome feedback boosts."
        )
        parser.add_argument("--no-answers", action="store_true", help="Skip the answer checks.")

    def handle(self, *args, set_name, mode, rerank, no_feedback, no_answers, **options):
        sets = EvalSet.objects.order_by("name")
        if set_name:
            sets = sets.filter(name=set_name)
            if not sets.exists():
                raise CommandError(f"No evaluation set named {set_name!r}.")
        if not sets.exists():
            raise CommandError("There is no evaluation set yet (load the demo data or import one).")
        for eval_set in sets:
            try:
                run = eval_run_create(
                    eval_set=eval_set,
                    modes=run_modes(mode),
                    use_reranker=rerank,
                    use_feedback=not no_feedback,
                    check_answers=not no_answers,
                    triggered_by="manage.py evaluate",
                )
            except ApiError as exc:
                raise CommandError(f"[{exc.code}] {exc.message}") from None
            self.stdout.write(
                f"{eval_set.name}: run {run.pk}, {run.case_count} case(s), {', '.join(run.modes)}"
            )
            run = eval_run_execute(run_id=run.pk, progress=self._progress)
            self.stderr.write("")
            self.stdout.write(metrics_table(run))

    def _progress(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
