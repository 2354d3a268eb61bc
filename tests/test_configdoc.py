"""docs/configuration.md is generated from the config models: it must say what the code accepts."""

from __future__ import annotations

from pathlib import Path

from processor.config import Config
from processor.configdoc import render

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_the_configuration_page_is_current():
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run `python -m processor.configdoc > docs/configuration.md`")


def test_the_page_names_every_key_of_every_section():
    page = PAGE.read_text(encoding="utf-8")
    for section in ("store", "sftp", "smtp", "daemon"):
        assert f"## `[{section}]`" in page
        for key in getattr(Config.model_fields[section].annotation, "model_fields", None) or \
                Config.model_fields[section].annotation.__args__[0].model_fields:
            assert f"| `{key}` |" in page, f"{section}.{key}"
    assert "## `[[tenants.<id>.policy.role_overrides]]`" in page and "## `[tenants.<id>.pull]`" in page


def test_messages_and_the_generated_config_point_at_the_page_not_at_the_contract(tmp_path):
    from processor.config import ConfigError, load_config
    from processor.home import CONFIG_HEADER

    assert "docs/configuration.md" in CONFIG_HEADER and "CONTRACT" not in CONFIG_HEADER
    (tmp_path / "rosterdrop.toml").write_text("[sftp]\nprot = 1\n")
    try:
        load_config(tmp_path, environ={})
    except ConfigError as exc:
        assert "docs/configuration.md" in str(exc) and "CONTRACT" not in str(exc)
    else:
        raise AssertionError("an unknown key must be refused")
