"""What every command and worker needs: the home, its validated config and the store engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine

from processor.config import Config, load_config


class UserError(Exception):
    """A problem to show the operator as one line (exit 1), never as a traceback."""


@dataclass
class Context:
    home: Path
    config: Config
    _engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def load(cls, home: Path) -> Context:
        return cls(home=home, config=load_config(home))

    @cached_property
    def engine(self) -> Engine:
        from processor.apply.schema import open_checked

        # Opened and checked at the current schema revision; never creates tables (init and `db upgrade` do).
        return self._engine or open_checked(self.config.store_url())

    def path(self, *parts: str) -> Path:
        return self.home.joinpath(*parts)
