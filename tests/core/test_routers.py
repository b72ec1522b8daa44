"""core/routers.py and core/replicas.py without replicas (the default): Django's `default` for
everything, no cookie, nothing on /healthz. With a real replica: tests/core/test_replicas.py."""

import pytest
from django.db import DEFAULT_DB_ALIAS

from core.replicas import read_alias, replica_aliases, replica_scope
from knowledge.models import KnowledgeSource


@pytest.mark.django_db
def test_without_replicas_reads_use_the_primary_and_no_cookie_is_set(api):
    assert replica_aliases() == []
    with replica_scope():
        assert read_alias() == DEFAULT_DB_ALIAS
        assert KnowledgeSource.objects.all().db == DEFAULT_DB_ALIAS
    response = api.post("/api/v1/sources", json={"text": "A hinge.", "title": "Hinge"})
    assert response.status_code == 201
    assert "kioku_read_primary_until" not in response.cookies
    assert "replicas" not in api.client.get("/healthz").json()
