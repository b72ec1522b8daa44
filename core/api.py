from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status

from core.auth import admin_auth, read_auth
from core.errors import ApiError, ErrorCode
from core.models import ApiKey, ApiScope
from core.schemas import errors
from core.services import ApiKeyError, api_key_create, api_key_revoke

router = Router(tags=["core"])


class WhoAmIOut(Schema):
    name: str
    scopes: list[str]


class ApiKeyIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[ApiScope] = Field(min_length=1)


class ApiKeyOut(Schema):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: str
    revoked: bool

    @staticmethod
    def resolve_created_at(obj: ApiKey) -> str:
        return obj.created_at.isoformat()

    @staticmethod
    def resolve_revoked(obj: ApiKey) -> bool:
        return obj.revoked_at is not None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The secret itself. Shown only in this response.")


@router.get("/whoami", response=WhoAmIOut, auth=read_auth, summary="The API key in use")
def whoami(request: HttpRequest) -> WhoAmIOut:
    return WhoAmIOut(name=request.auth.name, scopes=list(request.auth.scopes))


@router.get("/api-keys", response=list[ApiKeyOut], auth=admin_auth, summary="List API keys")
def api_key_list(request: HttpRequest) -> QuerySet[ApiKey]:
    return ApiKey.objects.order_by("name")


@router.post(
    "/api-keys",
    response={201: ApiKeyCreatedOut, **errors(409)},
    auth=admin_auth,
    summary="Create an API key",
)
def api_key_post(request: HttpRequest, payload: ApiKeyIn) -> Status[ApiKey]:
    try:
        api_key, raw_key = api_key_create(name=payload.name, scopes=payload.scopes)
    except ApiKeyError as exc:
        # A name already taken is a conflict with existing state, not a bad request.
        taken = ApiKey.objects.filter(name=payload.name).exists()
        raise ApiError(ErrorCode.API_KEY_INVALID, str(exc), status=409 if taken else 400) from None
    api_key.key = raw_key
    return Status(201, api_key)


@router.delete(
    "/api-keys/{key_id}", response={204: None}, auth=admin_auth, summary="Revoke an API key"
)
def api_key_delete(request: HttpRequest, key_id: int) -> Status[None]:
    api_key_revoke(api_key=get_object_or_404(ApiKey, pk=key_id))
    return Status(204, None)
