"""rosterdrop.toml: pydantic models, environment overrides and one-line config errors."""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class SftpConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(2222, ge=0, le=65535)
    quiet_period_seconds: float = Field(60, gt=0)


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
    users: list[str] = []
    students: list[str] = []
    classes: list[str] = []
    schools: list[str] = []


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
    report_to: list[str] = []
    policy: Policy = Policy()
    pull: PullConfig | None = None
    expect_drop_every_hours: float | None = Field(None, gt=0)
    timezone: str = "UTC"  # IANA name: times in this tenant's reports and emails are local times
    pauses: list[Pause] = []  # the school year's pauses (summer): processor/apply/pauses.py

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from processor.report.timezones import check_timezone

        return check_timezone(v)


class DaemonConfig(_Strict):
    workers: int = Field(0, ge=0)  # 0: one per core
    retention_days: int = Field(30, ge=0)
    polling_observer: bool = False
    rescan_seconds: float = Field(60, gt=0)
    # the watched-folder door; unset: on exactly when the built-in SFTP server is off
    watch_inbox: bool | None = None
    watch_stable_seconds: float = Field(2, ge=0)
    stop_timeout_seconds: float = Field(8, ge=0)  # SIGTERM: how long current runs may take to finish
    weekly_digest: str | None = None  # crontab expression, e.g. "0 7 * * mon"; unset: no digest


class Config(_Strict):
    store: StoreConfig = StoreConfig()
    sftp: SftpConfig = SftpConfig()
    smtp: SmtpConfig | None = None
    daemon: DaemonConfig = DaemonConfig()
    tenants: dict[str, Tenant] = {}
    home: Path = Field(default=Path("."), exclude=True)

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
        """The store URL with a relative SQLite path made relative to the home."""
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            return prefix + str((self.home / url[len(prefix):]).resolve())
        return url


ENV_SECTIONS = ("store", "sftp", "smtp", "daemon")


def _env_overrides(raw: dict, environ: dict[str, str]) -> None:
    """Apply ROSTERDROP_<SECTION>__<KEY> variables on top of the file's values (env wins)."""
    for name, value in environ.items():
        if not name.startswith("ROSTERDROP_") or "__" not in name:
            continue
        section, _, key = name[len("ROSTERDROP_"):].partition("__")
        section, key = section.lower(), key.lower()
        if section not in ENV_SECTIONS or not key:
            continue
        raw.setdefault(section, {})[key] = _parse_env_value(value)


def _parse_env_value(value: str):
    # Pydantic coerces strings for int/float/bool fields; lists come as TOML arrays.
    if value.startswith("["):
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after",))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against CONTRACT.md section 2)"
        elif e["type"] == "missing":
            msg = "required key is missing"
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
    _env_overrides(raw, environ)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_format_error(exc)}") from None
    cfg.home = home
    return cfg


def resolve_home(arg: str | None, environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(arg or environ.get("ROSTERDROP_HOME") or "rosterdrop-home").absolute()
