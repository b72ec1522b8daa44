"""The schedules declared in code name tasks that exist."""

from importlib import import_module

import pytest
from django_q.models import Schedule

from core.schedules import SCHEDULES, schedules_sync


@pytest.mark.parametrize("spec", SCHEDULES, ids=lambda spec: spec.func)
def test_every_scheduled_task_can_be_imported(spec):
    module, _, name = spec.func.rpartition(".")
    assert callable(getattr(import_module(module), name))


def test_each_task_is_named_after_the_service_it_wraps():
    for spec in SCHEDULES:
        module, _, name = spec.func.rpartition(".")
        assert module.endswith(".tasks") and not name.endswith("_task"), spec.func


@pytest.mark.django_db
def test_sync_replaces_a_schedule_whose_task_was_renamed():
    Schedule.objects.create(
        name="knowledge: embed pending rows", func="knowledge.tasks.embedding_process_task"
    )
    schedules_sync()
    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert "knowledge.tasks.embedding_process_task" not in funcs
    assert {spec.func for spec in SCHEDULES} <= funcs


@pytest.mark.django_db
def test_the_daily_evaluation_first_runs_a_day_after_it_is_created_and_keeps_its_time():
    from datetime import timedelta

    from django.utils import timezone

    schedules_sync()
    daily = Schedule.objects.get(func="quality.tasks.eval_runs_scheduled")
    assert daily.next_run > timezone.now() + timedelta(hours=23)
    embed = Schedule.objects.get(func="knowledge.tasks.embedding_run")
    assert embed.next_run <= timezone.now()
    first = daily.next_run
    schedules_sync()  # `./scripts/run` syncs at every start: the time is not pushed back
    assert Schedule.objects.get(pk=daily.pk).next_run == first
