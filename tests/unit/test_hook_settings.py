"""SHADOWLINE_ON_ROLE_CHANGE and SHADOWLINE_BEFORE_PROMOTE are checked at start-up: a command
line that cannot be split, names no executable, or whose hook could not fit the promote
command's window is refused with a clear error; an empty one is no hook."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from shadowline.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SHADOWLINE_"):
            monkeypatch.delenv(name)


def _script(tmp_path: Path, executable: bool = True) -> Path:
    path = tmp_path / "hook.sh"
    path.write_text("#!/bin/sh\nexit 0\n")
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("variable", ["SHADOWLINE_ON_ROLE_CHANGE", "SHADOWLINE_BEFORE_PROMOTE"])
def test_a_hook_naming_an_executable_with_arguments_is_taken_as_given(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = f"{_script(tmp_path)} --vip 10.0.0.5 'a b'"
    monkeypatch.setenv(variable, command)
    settings = Settings()
    assert getattr(settings, variable.removeprefix("SHADOWLINE_").lower()) == command
    assert settings.masked()[variable.removeprefix("SHADOWLINE_").lower()] == command


def test_a_program_found_on_path_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLINE_ON_ROLE_CHANGE", "logger -t shadowline")
    assert Settings().on_role_change == "logger -t shadowline"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("/nonexistent/hook.sh", "'/nonexistent/hook.sh', which is not an executable file"),
        ("no-such-program-anywhere x", "'no-such-program-anywhere', which is not an executable"),
        ("'/bin/true", "cannot be split into words (No closing quotation)"),
        ("/tmp", "'/tmp', which is not an executable file"),
    ],
)
def test_a_hook_that_cannot_run_is_refused_at_start_saying_why(
    command: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWLINE_BEFORE_PROMOTE", command)
    with pytest.raises(ValidationError) as error:
        Settings()
    assert "before_promote" in str(error.value) and says in str(error.value)


def test_a_script_that_is_not_executable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWLINE_ON_ROLE_CHANGE", str(_script(tmp_path, executable=False)))
    with pytest.raises(ValidationError, match="not an executable file"):
        Settings()


def test_an_empty_hook_is_no_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLINE_ON_ROLE_CHANGE", "   ")
    assert Settings().on_role_change is None


def test_a_before_promote_hook_that_cannot_fit_the_promote_window_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWLINE_BEFORE_PROMOTE", str(_script(tmp_path)))
    monkeypatch.setenv("SHADOWLINE_TAKEOVER_DELAY", "25")
    monkeypatch.setenv("SHADOWLINE_BEFORE_PROMOTE_TIMEOUT", "10")
    with pytest.raises(ValidationError, match="must be < 30s, the time a promote command"):
        Settings()


@pytest.mark.parametrize("value", ["0", "-1", "3601", "soon"])
def test_a_hook_timeout_out_of_bounds_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWLINE_ON_ROLE_CHANGE_TIMEOUT", value)
    with pytest.raises(ValidationError, match="on_role_change_timeout"):
        Settings()
