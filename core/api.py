from django.http import HttpRequest
from ninja import Router, Schema

from core.auth import read_auth

router = Router(tags=["core"])


class WhoAmIOut(Schema):
    name: str
    scopes: list[str]


@router.get("/whoami", response=WhoAmIOut, auth=read_auth, summary="The API key in use")
def whoami(request: HttpRequest) -> WhoAmIOut:
    return WhoAmIOut(name=request.auth.name, scopes=list(request.auth.scopes))
