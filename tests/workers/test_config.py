from __future__ import annotations

import pytest

from modelbuild.errors import UserError
from modelbuild.workers.config import DEFAULT_IDLE, check_settings, parse_duration, resolve


@pytest.mark.parametrize(("given", "seconds"), [(90, 90.0), (1.5, 1.5), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), (" 3 m ", 180.0)])
def test_durations(given: object, seconds: float) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", [0, -1, True, "soon", "15 minutes", "", None, [1]])
def test_durations_refused(given: object) -> None:
    assert parse_duration(given) is None


def test_settings_problems_name_the_field_and_what_was_found() -> None:
    problems = check_settings({"warm": "yes", "idle_timeout": "forever", "pool": 3}, "modelbuild.toml")
    text = "\n".join(problems)
    assert "workers.warm" in text and "'yes'" in text
    assert "workers.idle_timeout" in text and "'forever'" in text
    assert "workers.pool" in text and "unknown setting" in text
    assert check_settings("warm", "modelbuild.toml")[0].endswith("expected a table, got 'warm'")
    assert check_settings({"warm": False, "idle_timeout": "10m"}, "x") == []


def test_precedence_flag_then_variable_then_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("MODELBUILD_WORKERS", raising=False)
    monkeypatch.delenv("MODELBUILD_WORKERS_IDLE", raising=False)
    assert resolve(None, cold_flag=False).warm and resolve(None, False).idle == DEFAULT_IDLE
    assert resolve({"idle_timeout": "1m"}, False).idle == 60
    table_off = resolve({"warm": False}, False)
    assert not table_off.warm and table_off.why_cold == "[workers] warm = false"
    monkeypatch.setenv("MODELBUILD_WORKERS", "warm")
    assert resolve({"warm": False}, False).warm  # the variable wins over the table
    assert resolve({"warm": True}, cold_flag=True).why_cold == "--cold"  # the flag wins over all
    monkeypatch.setenv("MODELBUILD_WORKERS", "cold")
    assert resolve({"warm": True}, False).why_cold == "MODELBUILD_WORKERS=cold"
    monkeypatch.setenv("MODELBUILD_WORKERS", "tepid")
    with pytest.raises(UserError, match="expected 'warm' or 'cold', got 'tepid'"):
        resolve(None, False)
    monkeypatch.setenv("MODELBUILD_WORKERS", "warm")
    monkeypatch.setenv("MODELBUILD_WORKERS_IDLE", "30s")
    assert resolve({"idle_timeout": "1h"}, False).idle == 30
    monkeypatch.setenv("MODELBUILD_WORKERS_IDLE", "never")
    with pytest.raises(UserError, match="MODELBUILD_WORKERS_IDLE"):
        resolve(None, False)


def test_no_warm_server_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "darwin")
    monkeypatch.setenv("MODELBUILD_WORKERS", "warm")
    settings = resolve(None, False)
    assert not settings.warm and "need Linux" in (settings.why_cold or "")
