from django.http import HttpRequest
from ninja.security import HttpBearer

from core.errors import ApiError, ErrorCode
from core.models import ApiKey, ApiScope
from core.services import api_key_authenticate


class ApiKeyAuth(HttpBearer):
    """`Authorization: Bearer <key>`; the key must hold `scope` (admin ⊃ write ⊃ read)."""

    def __init__(self, scope: str = ApiScope.READ) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> ApiKey:
        header = request.headers.get(self.header)
        if not header:
            raise ApiError(
                ErrorCode.AUTH_REQUIRED,
                "This endpoint needs an API key: send 'Authorization: Bearer <key>'.",
                status=401,
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.openapi_scheme.lower() or not token.strip():
            raise ApiError(
                ErrorCode.AUTH_REQUIRED,
                "Malformed Authorization header: expected 'Bearer <key>'.",
                status=401,
            )
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey:
        api_key = api_key_authenticate(token)
        if api_key is None:
            raise ApiError(ErrorCode.AUTH_INVALID_KEY, "Unknown or revoked API key.", status=401)
        if not api_key.has_scope(self.scope):
            raise ApiError(
                ErrorCode.AUTH_FORBIDDEN_SCOPE,
                f"This API key lacks the '{self.scope}' scope.",
                status=403,
                details={"required_scope": str(self.scope), "key_scopes": list(api_key.scopes)},
            )
        return api_key


read_auth = ApiKeyAuth(ApiScope.READ)
write_auth = ApiKeyAuth(ApiScope.WRITE)
admin_auth = ApiKeyAuth(ApiScope.ADMIN)
