import pytest
from django.core.management import CommandError, call_command

from core.models import ApiKey, hash_api_key

pytestmark = pytest.mark.django_db


def test_create_api_key_prints_the_key_once_and_stores_only_its_hash(capsys):
    call_command("create_api_key", "line-bot", "--scope", "read", "--scope", "write")
    raw_key = capsys.readouterr().out.strip().splitlines()[-1]
    api_key = ApiKey.objects.get(name="line-bot")
    assert api_key.scopes == ["read", "write"]
    assert api_key.key_hash == hash_api_key(raw_key)
    assert raw_key not in (api_key.key_hash, api_key.prefix)


def test_create_api_key_refuses_a_duplicate_name():
    call_command("create_api_key", "twin", "--scope", "read")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_api_key", "twin", "--scope", "read")


def test_scope_check_rejects_unknown_scopes_in_the_database():
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        ApiKey.objects.create(name="bad", prefix="x", key_hash="y", scopes=["root"])


def test_dev_admin_is_created_once():
    from core.demo import dev_admin_ensure

    password = dev_admin_ensure()
    assert password and len(password) >= 12
    assert dev_admin_ensure() is None
