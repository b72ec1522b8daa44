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
