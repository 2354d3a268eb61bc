"""The vendor app's HTTP API (CONTRACT.md section 10), meant to be mounted at `/api/v1` by the console app:

    Mount("/api/v1", app=create_api(ctx))

Its OpenAPI document is then at /api/v1/openapi.json. Every route needs `Authorization: Bearer <token>`
(`rosterdrop api-token create`); a tenant-scoped token gets 404 for any other tenant, exactly as for a tenant
that does not exist, so it learns nothing about them. Handlers are plain functions (FastAPI runs them on its
thread pool) calling the same library functions as the CLI.
"""

from __future__ import annotations

import base64
import binascii
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from processor.apply.export import SCHOOL_TYPES, SHAPES
from processor.apply.locks import NotFound, list_locks, lock_field, unlock_field
from processor.apply.store import ENTITY_TABLES, runs
from processor.context import Context, UserError
from processor.events import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, EventsExpired, last_event_id, read_events
from processor.web.tokens import Token, authenticate

TenantId = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}$", description="the tenant (district) id")]
PAGE_DEFAULT, PAGE_MAX = 100, 1000
AppRole = Literal["district_admin", "school_admin", "teacher", "staff", "student", "guardian"]


class Event(BaseModel):
    id: int
    tenant: str
    run_id: str | None
    type: str
    sourced_id: str | None
    changed: list[str]
    at: str


class EventPage(BaseModel):
    events: list[Event]
    next: int


class School(BaseModel):
    sourced_id: str
    name: str | None
    identifier: str
    type: str | None
    status: str


class Person(BaseModel):
    sourced_id: str
    role: str | None
    email: str
    given_name: str
    family_name: str
    username: str
    school: str | None
    schools: list[str]
    status: str
    preferred_language: str = "en"  # ISO 639 / BCP-47, from metadata.preferred_language (Clever: ext.*)


class Class(BaseModel):
    sourced_id: str
    title: str | None
    grades: list[str]
    school: str | None
    status: str


class Enrollment(BaseModel):
    sourced_id: str
    class_: str | None = Field(alias="class")
    person: str | None
    role: str | None
    status: str


class _Page(BaseModel):
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page
    events_cursor: int  # the tenant's last event id when the page was read: read events after it


class SchoolPage(_Page):
    schools: list[School]


class PersonPage(_Page):
    people: list[Person]


class ClassPage(_Page):
    classes: list[Class]


class EnrollmentPage(_Page):
    enrollments: list[Enrollment]


LockEntity = Literal["people", "classes", "schools", "enrollments"]


class _LockIn(BaseModel):
    sourced_id: str = Field(min_length=1, max_length=1000)
    value: str = Field(max_length=1000)
    by: str | None = Field(None, max_length=200, description="who made the change (default: the token's name)")


class PersonRoleLock(_LockIn):
    entity: Literal["people"]
    field: Literal["role"]
    value: AppRole


class PersonLock(_LockIn):
    entity: Literal["people"]
    field: Literal["email", "given_name", "family_name", "middle_name", "username", "identifier"]


class ClassLock(_LockIn):
    entity: Literal["classes"]
    field: Literal["title", "class_code"]


class SchoolLock(_LockIn):
    entity: Literal["schools"]
    field: Literal["name", "identifier"]


class EnrollmentLock(_LockIn):
    entity: Literal["enrollments"]
    field: Literal["role"]


# The lockable fields per entity (processor/apply/locks.py LOCKABLE), spelled out for the OpenAPI document.
LockIn = PersonRoleLock | PersonLock | ClassLock | SchoolLock | EnrollmentLock


class Lock(BaseModel):
    tenant: str | None = None
    entity: str
    sourced_id: str
    field: str
    value: str
    by: str
    at: str


class LockList(BaseModel):
    locks: list[Lock]


class Unlocked(BaseModel):
    tenant: str
    entity: str
    sourced_id: str
    field: str
    unlocked: bool
    by: str
    at: str


class Error(BaseModel):
    error: str


ERRORS = {400: {"model": Error}, 401: {"model": Error}, 404: {"model": Error}}


_bearer = HTTPBearer(auto_error=False)


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _token(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Token:
    grant = authenticate(_ctx(request).engine, credentials.credentials) if credentials else None
    if grant is None:
        raise HTTPException(401, "a valid API token is required: Authorization: Bearer <token> "
                                 "(see `rosterdrop api-token create`)", headers={"WWW-Authenticate": "Bearer"})
    return grant


def _tenant(request: Request, tenant: TenantId, grant: Annotated[Token, Depends(_token)]) -> str:
    # Same answer for "no such tenant" and "not yours": a scoped token learns nothing about others.
    if tenant not in _ctx(request).config.tenants or not grant.sees(tenant):
        raise HTTPException(404, f"no tenant {tenant!r} for this token")
    return tenant


Tenant = Annotated[str, Depends(_tenant)]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description="rows per page")]
# Unpadded base64url: groups of 4, and a last group of 2 or 3.
Cursor = Annotated[str | None, Query(max_length=2000, pattern=r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$",
                                     description="next_cursor of the previous page")]
Status = Annotated[Literal["active", "inactive", "all"], Query(description="default: active rows only")]
UpdatedAfter = Annotated[datetime | None, Query(description="only rows a run changed after this time")]
SchoolId = Annotated[str | None, Query(max_length=1000, description="only rows of this school (sourced_id)")]


def create_api(ctx: Context) -> FastAPI:
    api = FastAPI(title="Rosterdrop API", version="1",
                  description="Change events and roster reads for the vendor's app (CONTRACT.md section 10).")
    api.state.ctx = ctx

    @api.exception_handler(HTTPException)
    def _error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @api.get("/tenants/{tenant}/events", response_model=EventPage, responses={**ERRORS, 410: {"model": Error}})
    def get_events(tenant: Tenant, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
                   limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT):
        """The tenant's change events with id > after, oldest first. 410: the cursor is older than the
        oldest kept event; resync from the roster routes and read events after their `events_cursor`."""
        try:
            page = read_events(ctx.engine, tenant, after=after, limit=limit)
        except EventsExpired as exc:
            raise HTTPException(410, str(exc)) from None
        return {"events": page.events, "next": page.next}

    @api.get("/tenants/{tenant}/schools", response_model=SchoolPage, responses=ERRORS)
    def get_schools(tenant: Tenant, cursor: Cursor = None, limit: Limit = PAGE_DEFAULT, status: Status = "active",
                    updated_after: UpdatedAfter = None):
        return _page(ctx, tenant, "schools", cursor, limit, status, updated_after)

    @api.get("/tenants/{tenant}/people", response_model=PersonPage, responses=ERRORS)
    def get_people(tenant: Tenant, cursor: Cursor = None, limit: Limit = PAGE_DEFAULT, status: Status = "active",
                   updated_after: UpdatedAfter = None, school: SchoolId = None,
                   role: Annotated[AppRole | None, Query()] = None):
        return _page(ctx, tenant, "people", cursor, limit, status, updated_after, school=school, role=role)

    @api.get("/tenants/{tenant}/classes", response_model=ClassPage, responses=ERRORS)
    def get_classes(tenant: Tenant, cursor: Cursor = None, limit: Limit = PAGE_DEFAULT, status: Status = "active",
                    updated_after: UpdatedAfter = None, school: SchoolId = None):
        return _page(ctx, tenant, "classes", cursor, limit, status, updated_after, school=school)

    @api.get("/tenants/{tenant}/enrollments", response_model=EnrollmentPage, responses=ERRORS)
    def get_enrollments(tenant: Tenant, cursor: Cursor = None, limit: Limit = PAGE_DEFAULT,
                        status: Status = "active", updated_after: UpdatedAfter = None, school: SchoolId = None,
                        role: Annotated[str | None, Query(max_length=64)] = None):
        return _page(ctx, tenant, "enrollments", cursor, limit, status, updated_after, school=school, role=role)

    @api.get("/tenants/{tenant}/locks", response_model=LockList, responses=ERRORS)
    def get_locks(tenant: Tenant):
        """The tenant's field locks: manual edits that drops do not overwrite."""
        with ctx.engine.connect() as conn:
            return {"locks": list_locks(conn, tenant)}

    @api.put("/tenants/{tenant}/locks", response_model=Lock, responses={**ERRORS, 409: {"model": Error}})
    def put_lock(tenant: Tenant, body: LockIn, grant: Annotated[Token, Depends(_token)]):
        """Set a field of a stored row and keep it whatever later drops say."""
        with _lock_errors():
            return lock_field(ctx.engine, tenant, body.entity, body.sourced_id, body.field, body.value,
                              by=body.by or f"api-token {grant.name}")

    @api.delete("/tenants/{tenant}/locks", response_model=Unlocked, responses={**ERRORS, 409: {"model": Error}})
    def delete_lock(tenant: Tenant, grant: Annotated[Token, Depends(_token)], entity: LockEntity,
                    sourced_id: Annotated[str, Query(min_length=1, max_length=1000)],
                    field: Annotated[str, Query(min_length=1, max_length=64)],
                    by: Annotated[str | None, Query(max_length=200)] = None):
        """Give a locked field back to the district's drops (the next drop sets the SIS's value)."""
        with _lock_errors():
            return unlock_field(ctx.engine, tenant, entity, sourced_id, field, by=by or f"api-token {grant.name}")

    return api


@contextmanager
def _lock_errors():
    try:
        yield
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except UserError as exc:
        raise HTTPException(409 if "busy" in str(exc) else 400, str(exc)) from None


def encode_cursor(sourced_id: str) -> str:
    return base64.urlsafe_b64encode(sourced_id.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode(
            "utf-8", errors="replace")  # a position only: a forged one just starts the page elsewhere
    except (binascii.Error, ValueError):
        raise HTTPException(400, "cursor is not one this API gave out; pass next_cursor as it came") from None


def _page(ctx: Context, tenant: str, key: str, cursor: str | None, limit: int, status: str,
          updated_after: datetime | None, school: str | None = None, role: str | None = None) -> dict:
    """One page of export-shaped rows, in sourced_id order, after the cursor's sourced_id (keyset
    pagination: stable while rows change, no offsets)."""
    table, cols, shape = SHAPES[key]
    t = ENTITY_TABLES[table]
    q = select(*[t.c[c] for c in cols]).where(t.c.tenant == tenant)
    if key == "schools":
        q = q.where(t.c.type.in_(SCHOOL_TYPES))
    if status != "all":
        q = q.where(t.c.status == status)
    if cursor:
        q = q.where(t.c.sourced_id > decode_cursor(cursor))
    if school is not None:
        q = q.where(or_(t.c.school == school, ("," + t.c.schools + ",").contains("," + school + ",", autoescape=True))
                    if key == "people" else t.c.school == school)
    if role is not None:
        q = q.where(t.c.role == role)
    if updated_after is not None:
        if updated_after.tzinfo is None:
            updated_after = updated_after.replace(tzinfo=UTC)
        since = updated_after.astimezone(UTC).isoformat(timespec="microseconds")
        q = q.where(t.c.run_id.in_(select(runs.c.run_id).where(runs.c.tenant == tenant, runs.c.finished_at > since)))
    with ctx.engine.connect() as conn:
        events_cursor = last_event_id(conn, tenant)
        rows = conn.execute(q.order_by(t.c.sourced_id).limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {key: [shape(r) for r in rows], "next_cursor": encode_cursor(rows[-1]["sourced_id"]) if more else None,
            "events_cursor": events_cursor}
