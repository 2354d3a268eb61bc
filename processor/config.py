"""rosterdrop.toml: pydantic models, environment overrides and one-line config errors."""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

APP_ROLES = ("district_admin", "school_admin", "teacher", "staff", "student", "guardian")
AppRole = Literal["district_admin", "school_admin", "teacher", "staff", "student", "guardian"]
TENANT_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
CONFIG_NAME = "rosterdrop.toml"


class ConfigError(Exception):
    """A configuration problem, already worded for the operator (key path + what is expected)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Strict):
    url: str = "sqlite:///rosterdrop.db"
    password_env: str | None = None  # the database password is read from this environment variable


class SftpConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(2222, ge=0, le=65535)
    quiet_period_seconds: float = Field(60, gt=0)
    # connection caps: logins in progress are capped per address and in total, below max_connections
    max_connections: int = Field(64, ge=1)
    max_unauthenticated: int = Field(32, ge=1)
    max_unauthenticated_per_address: int = Field(8, ge=1)
    login_grace_seconds: float = Field(30, gt=0)  # a connection not logged in by then is closed
    # upload limits (each can be overridden per tenant in [tenants.X.limits])
    max_upload_bytes: int = Field(2 * 1024**3, ge=1)
    max_files_per_session: int = Field(100, ge=1)
    max_inbox_bytes: int = Field(10 * 1024**3, ge=1)


class SmtpConfig(_Strict):
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password_env: str | None = None
    sender: str = "Rosterdrop <rosterdrop@localhost>"
    reply_to: str | None = None
    list_id: str | None = None
    timeout_seconds: float = Field(30, gt=0)


class RoleOverride(_Strict):
    column: str
    value: str
    role: AppRole

    @field_validator("column")
    @classmethod
    def _metadata_column(cls, v: str) -> str:
        if not v.lower().startswith("metadata."):
            raise ValueError("must name a metadata.* column, e.g. 'metadata.MembeanSchoolAdmin'")
        return v


class RequireConfig(_Strict):
    users: list[Annotated[str, AfterValidator(lambda c: check_required_column("users", c))]] = []
    students: list[Annotated[str, AfterValidator(lambda c: check_required_column("students", c))]] = []
    classes: list[Annotated[str, AfterValidator(lambda c: check_required_column("classes", c))]] = []
    schools: list[Annotated[str, AfterValidator(lambda c: check_required_column("schools", c))]] = []


class Policy(_Strict):
    single_school: bool = False
    students_need_enrollment: bool = False
    exclude_roles: list[AppRole] = []
    max_deactivated_percent: float = Field(10, ge=0, le=100)
    max_guardians_per_student: int = Field(5, ge=0)
    # Safeguards of CONTRACT.md section 7 (each hold's default is argued in README.md, "Holds").
    min_deactivated_count: int = Field(10, ge=0)
    max_deactivated_percent_per_school: float = Field(25, ge=0, le=100)
    max_rejected_percent: float = Field(10, ge=0, le=100)
    min_rejected_count: int = Field(10, ge=0)
    max_updated_percent: float = Field(50, ge=0, le=100)
    role_map: dict[str, AppRole] = {}
    require: RequireConfig = RequireConfig()
    role_overrides: list[RoleOverride] = []


class PullConfig(_Strict):
    host: str
    port: int = Field(22, ge=1, le=65535)
    username: str
    key_file: str | None = None
    password_env: str | None = None
    remote_dir: str = "."
    pattern: str = "*.zip"
    schedule: str = "0 2 * * *"
    known_hosts: str | None = None


class TenantLimits(_Strict):
    """Per-tenant overrides of the [sftp] upload limits; unset keys use [sftp]'s."""
    max_upload_bytes: int | None = Field(None, ge=1)
    max_files_per_session: int | None = Field(None, ge=1)
    max_inbox_bytes: int | None = Field(None, ge=1)


class Webhook(_Strict):
    url: str = Field(pattern=r"^https?://[^\s]+$")
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the signing secret's environment variable
    events: list[str] = ["*"]  # event type patterns, e.g. ["person.*", "run.*"]


class Pause(_Strict):
    """[[tenants.X.pauses]]: drops received from `from` to `until` (dates, inclusive, in the tenant's time zone)."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: date = Field(alias="from")
    until: date
    mode: Literal["hold", "additions_only", "skip"] = "hold"

    @model_validator(mode="after")
    def _in_order(self) -> Pause:
        if self.until < self.start:
            raise ValueError(f"until ({self.until}) is before from ({self.start})")
        return self


class Tenant(_Strict):
    name: str
    report_to: list[Annotated[str, AfterValidator(lambda a: check_address(a))]] = []
    policy: Policy = Policy()
    limits: TenantLimits | None = None
    pull: PullConfig | None = None
    expect_drop_every_hours: float | None = Field(None, gt=0)
    webhooks: list[Webhook] = []
    timezone: str = "UTC"  # IANA name: times in this tenant's reports and emails are local times
    pauses: list[Pause] = []  # the school year's pauses (summer): processor/apply/pauses.py

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from processor.report.timezones import check_timezone

        return check_timezone(v)

    # Both reach email headers, subjects and every run's report: a line break or separator in them made
    # every run of the tenant fail at the email (issue 13), so they are refused here, at start-up.
    @field_validator("name")
    @classmethod
    def _one_line_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return no_control_characters(v)


# C0/C1 controls (CR, LF, NUL, U+0085 ...), U+2028/U+2029 and the bidirectional overrides, which would
# break a header or make a report show something other than what it says.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ADDRESS = re.compile(r"^[^@\s\"(),:;<>\[\\\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z0-9-]{2,}$")


def no_control_characters(v: str) -> str:
    m = _CONTROL.search(v)
    if m:
        raise ValueError(f"contains the control character U+{ord(m.group()):04X} (line breaks and separators "
                         "are not allowed)")
    return v


def check_address(v: str) -> str:
    """An email address, `it@district.org` or `District IT <it@district.org>`; ValueError otherwise."""
    from email.utils import getaddresses

    no_control_characters(v)
    pairs = getaddresses([v])
    if len(pairs) != 1 or not _ADDRESS.match(pairs[0][1]) or "," in v:
        raise ValueError(f"{v!r} is not an email address (one per list item, e.g. \"it@district.example\")")
    return v


def check_required_column(file_key: str, column: str) -> str:
    """policy.require names a column of the OneRoster file it is about, or a metadata.* column."""
    from processor.bundle.formats import SPECS

    entity = {"users": "users", "students": "users", "classes": "classes", "schools": "orgs"}[file_key]
    spec = SPECS[entity]
    if column.lower().startswith("metadata.") and len(column) > len("metadata."):
        return column
    if column.lower() not in {c.lower() for c in spec.columns}:
        raise ValueError(f"{column!r} is not a column of {spec.filename} (OneRoster: {', '.join(spec.columns)}; "
                         "or a metadata.* column)")
    return column


class DaemonConfig(_Strict):
    workers: int = Field(0, ge=0)  # 0: one per core
    retention_days: int = Field(30, ge=0)
    # .part/.tmp/dot files, empty folders and truncated zips left in an inbox are removed after this; 0: never
    leftover_days: float = Field(7, ge=0)
    polling_observer: bool = False
    rescan_seconds: float = Field(60, gt=0)
    # the watched-folder door; unset: on exactly when the built-in SFTP server is off
    watch_inbox: bool | None = None
    watch_stable_seconds: float = Field(2, ge=0)
    stop_timeout_seconds: float = Field(8, ge=0)  # SIGTERM: how long current runs may take to finish
    weekly_digest: str | None = None  # crontab expression, e.g. "0 7 * * mon"; unset: no digest
    events_retention_days: int = Field(90, ge=0)  # change events kept this long (0: forever)


class LimitsConfig(_Strict):
    """What one run may take in and collect (processor/bundle/unpack.py Limits has the same fields)."""
    max_total_bytes: int = Field(1024**3, ge=1)  # the bundle's files once unzipped, all together
    max_ratio: float = Field(100, gt=1)  # how many times its compressed size a zip member may expand
    max_members: int = Field(200, ge=1)  # entries in one zip
    max_rows_per_file: int = Field(10_000_000, ge=1)
    max_columns_per_file: int = Field(500, ge=1)
    max_field_chars: int = Field(128 * 1024, ge=1024)  # one value (characters)
    max_issues_per_code_and_file: int = Field(1000, ge=1)  # past this, one more issue counts the rest


class WebConfig(_Strict):
    """The console and signed links (CONTRACT.md section 8)."""
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    base_url: str = "http://127.0.0.1:8080"
    secret_env: str = "ROSTERDROP_WEB_SECRET"
    link_days: float = Field(7, gt=0)
    support_contact: str | None = None  # shown in emails and pages: who a district admin asks for help

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http:// or https:// address, e.g. 'https://roster.example.org'")
        return v.rstrip("/")


class QueueConfig(_Strict):
    """Where received drops wait for a worker (CONTRACT.md section 11)."""
    # "local": an in-process queue, one host (the default). "procrastinate": a Procrastinate job per busy
    # tenant on the PostgreSQL store, so `rosterdrop serve` and `rosterdrop worker` on any number of hosts
    # share the work; needs a PostgreSQL [store] url, and `rosterdrop db upgrade` once.
    backend: Literal["local", "procrastinate"] = "local"
    # procrastinate: a worker silent this long (no heartbeat; it died with the host, or kill -9) has its
    # job retried by another worker, from the start of the drop it had.
    stalled_after_seconds: float = Field(60, ge=15)


class Config(_Strict):
    store: StoreConfig = StoreConfig()
    sftp: SftpConfig = SftpConfig()
    smtp: SmtpConfig | None = None
    daemon: DaemonConfig = DaemonConfig()
    limits: LimitsConfig = LimitsConfig()
    web: WebConfig = WebConfig()
    queue: QueueConfig = QueueConfig()
    tenants: dict[str, Tenant] = {}
    home: Path = Field(default=Path("."), exclude=True)
    _store_password: str | None = PrivateAttr(None)  # from the variable [store] password_env names

    @model_validator(mode="after")
    def _tenant_ids(self) -> Config:
        for tid in self.tenants:
            if not TENANT_ID.match(tid):
                raise ValueError(f"tenant id {tid!r} must be 1-64 characters of a-z, 0-9, '_' or '-'")
        return self

    def tenant(self, tenant_id: str) -> Tenant:
        try:
            return self.tenants[tenant_id]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none"
            raise ConfigError(
                f"unknown tenant {tenant_id!r} (configured: {known}); add [tenants.{tenant_id}] to "
                f"{self.home / CONFIG_NAME} or run `rosterdrop init --tenant {tenant_id}`"
            ) from None

    def store_url(self) -> str:
        """The store URL with a relative SQLite path made relative to the home, and the password that
        [store] password_env names put in (show it only through processor.apply.schema.display_url)."""
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            return prefix + str((self.home / url[len(prefix):]).resolve())
        if self._store_password is not None:
            from sqlalchemy.engine import make_url

            return make_url(url).set(password=self._store_password).render_as_string(hide_password=False)
        return url


ENV_SECTIONS = ("store", "sftp", "smtp", "daemon", "web", "queue")


def _env_overrides(raw: dict, environ: dict[str, str]) -> dict[tuple[str, str], str]:
    """Apply ROSTERDROP_<SECTION>__<KEY> variables on top of the file's values (env wins); which
    (section, key) came from which variable, so that an error names the variable, not the file."""
    used: dict[tuple[str, str], str] = {}
    for name, value in environ.items():
        if not name.startswith("ROSTERDROP_") or "__" not in name:
            continue
        section, _, key = name[len("ROSTERDROP_"):].partition("__")
        section, key = section.lower(), key.lower()
        if section not in ENV_SECTIONS or not key:
            continue
        raw.setdefault(section, {})[key] = _parse_env_value(value)
        used[(section, key)] = name
    return used


def _parse_env_value(value: str):
    # Pydantic coerces strings for int/float/bool fields; lists come as TOML arrays.
    if value.startswith("["):
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def _format_error(err: ValidationError) -> str:
    return _format_error_list(err.errors())


def _format_error_list(errors: list) -> str:
    lines = []
    for e in errors:
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after",))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against docs/configuration.md)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            msg = str(e["ctx"]["error"])
        elif e["type"].startswith("literal_error"):
            msg = f"expected {e['ctx']['expected']}" if "ctx" in e else msg
        lines.append(f"{loc or '(top level)'}: {msg}" + (f" (got {e['input']!r})" if _show_input(e) else ""))
    return "; ".join(lines)


def _show_input(e: dict) -> bool:
    return e["type"] not in ("extra_forbidden", "missing") and not isinstance(e.get("input"), dict)


def load_config(home: Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate <home>/rosterdrop.toml; raise ConfigError with the key path on any problem."""
    environ = os.environ if environ is None else environ
    path = home / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"{path} does not exist; run `rosterdrop init --home {home}` first")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    from_env = _env_overrides(raw, environ)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path, from_env)) from None
    cfg.home = home
    if cfg.store.password_env:
        cfg._store_password = environ.get(cfg.store.password_env)
        if cfg._store_password is None:
            where = from_env.get(("store", "password_env")) or f"{path}: store.password_env"
            raise ConfigError(f"{where}: the environment variable {cfg.store.password_env} is not set "
                              "(it must hold the database password; see docs/operations.md)")
    if cfg.queue.backend == "procrastinate" and not cfg.store.url.startswith("postgresql"):
        where = from_env.get(("queue", "backend")) or f"{path}: queue.backend"
        raise ConfigError(f'{where}: "procrastinate" needs a PostgreSQL store ([store] url = '
                          f'"postgresql+psycopg://..."), but the store is {cfg.store.url.split(":", 1)[0]}; '
                          'set [queue] backend = "local" for a one-host SQLite store')
    return cfg


def _format_errors(err: ValidationError, path: Path, from_env: dict[tuple[str, str], str]) -> str:
    """One line: errors in the file after its path, errors in a ROSTERDROP_* value after the variable."""
    in_file, in_env = [], []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        var = from_env.get(loc[:2]) if len(loc) >= 2 else None
        if var:
            in_env.append(f"{var} ({_format_error_list([e]).split(': ', 1)[0]}): "
                          + _format_error_list([e]).split(": ", 1)[1])
        else:
            in_file.append(e)
    return "; ".join(([f"{path}: {_format_error_list(in_file)}"] if in_file else []) + in_env)


def resolve_home(arg: str | None, environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(arg or environ.get("ROSTERDROP_HOME") or "rosterdrop-home").absolute()
