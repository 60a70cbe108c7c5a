"""Who is asking, and which collections they may read or write.

Every route that names a collection goes through `readable` or `writable`: a collection the
caller may not read is answered exactly as one that does not exist (404, the same words), so
that names do not leak; one they may read but not write is a 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.accounts import LOCAL_USER, Accounts, User
from rag.collection import check_name, list_collections
from rag.errors import CollectionError
from rag.server.errors import ApiError
from rag.server.jobs import JobRecord
from rag.settings import Settings


@dataclass(frozen=True)
class Caller:
    """The user a request comes from, with what it needs to check access."""

    user: User
    accounts: Accounts | None
    settings: Settings

    def can_read(self, name: str) -> bool:
        return self.accounts is None or self.accounts.can_read(self.user, name)

    def can_write(self, name: str) -> bool:
        return self.accounts is None or self.accounts.can_write(self.user, name)

    def readable_names(self) -> list[str]:
        """The collections this caller may read, sorted."""
        return [name for name in list_collections(self.settings.index_dir) if self.can_read(name)]

    def readable(self, name: str) -> str:
        """`name`, when it is a collection this caller may read; else 404 (or 400 for a name
        that cannot be one, such as `../etc`)."""
        try:
            check_name(name)
        except CollectionError as e:
            raise ApiError(400, str(e)) from e
        exists = (self.settings.index_dir / name).is_dir() and name in list_collections(
            self.settings.index_dir
        )
        if not exists or not self.can_read(name):
            raise ApiError(404, f"no collection named {name!r}")
        return name

    def writable(self, name: str) -> str:
        """`name`, when this caller may change it: 404 as `readable`, 403 when read-only."""
        self.readable(name)
        if not self.can_write(name):
            raise ApiError(403, f"collection {name!r} is shared with you read-only")
        return name


def visible(who: Caller, record: JobRecord) -> bool:
    """Whether `who` may see a job: the readers of its collection see an ingest; a batch (its
    questions and answers) is its submitter's, and the admins'."""
    if not who.can_read(record.collection):
        return False
    return record.kind != "batch" or who.user.admin or record.user == who.user.name


# Declared for the OpenAPI docs (their "Authorize" button); `caller` decides what a key means.
_BEARER = HTTPBearer(
    auto_error=False, description="An API key from `rag users add` (when accounts are on)."
)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> Caller:
    """FastAPI dependency: the caller, from `Authorization: Bearer KEY` (or `X-API-Key`) when
    accounts are on; without accounts everyone is the local user, as with the CLI."""
    state = request.app.state
    accounts: Accounts | None = state.accounts
    if accounts is None:
        return Caller(LOCAL_USER, None, state.settings)
    key = credentials.credentials.strip() if credentials else _key_of(request)
    if not key:
        raise ApiError(401, "an API key is required: send 'Authorization: Bearer <key>'")
    user = accounts.authenticate(key)
    if user is None:
        raise ApiError(401, "the API key is not valid")
    return Caller(user, accounts, state.settings)


def _key_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip()
