"""Secrets from files: `NAME_FILE=/path` beside every secret setting `NAME`, as Kubernetes
(projected volumes), Docker (`secrets:`) and Vault's agent deliver them, so a credential can
change under a running process without its environment changing.

`SecretFiles` is a pydantic-settings source: the file's content is the setting's value (a
trailing newline ignored), checked as the variable's would be, and what goes wrong with the file
(both variables set, a file missing or unreadable) is reported with every other bad variable,
naming the variable and never the content. Only the standard library and pydantic here: settings
are read before any process imports its drivers, so that bad config stops it at once. Reading
the database and Redis credentials again while running is credentials.py's job.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class SecretFileError(Exception):
    """A NAME_FILE that cannot be used; the message names the variable, never the content."""

    def __init__(self, variable: str, reason: str, path: Path | None = None) -> None:
        self.variable = variable
        self.reason = reason  # short and fixed: readiness shows it
        where = f" ({path})" if path is not None else ""
        super().__init__(f"{variable}{where}: {reason}")


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


def secret_fields(settings_cls: type[BaseSettings]) -> list[str]:
    """Every field typed SecretStr (alone, optional or in a tuple): each has its NAME_FILE."""
    return [name for name, f in settings_cls.model_fields.items() if _is_secret(f.annotation)]


def file_variable(field: str) -> str:
    return f"{field.upper()}_FILE"


def secret_file_paths(settings_cls: type[BaseSettings]) -> dict[str, Path]:
    """The files named by the NAME_FILE variables set, by field."""
    return {
        field: Path(os.environ[file_variable(field)])
        for field in secret_fields(settings_cls)
        if os.environ.get(file_variable(field))
    }


def read_secret_file(
    variable: str, path: Path, error: type[SecretFileError] = SecretFileError
) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(variable, "file not found", path) from None
    except PermissionError:
        raise error(variable, "file not readable (permission denied)", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(variable, f"file not readable ({type(exc).__name__})", path) from None
    # An empty file is a value like any other: the setting's own rules judge it (no fallback
    # keys is fine, an empty URL is not).
    return text.rstrip("\r\n")


class SecretFiles(PydanticBaseSettingsSource):
    """The pydantic-settings source of the NAME_FILE variables."""

    @dataclass(frozen=True)
    class Problem:
        message: str  # the field's validator raises it: see Settings._secret_file_problem

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads them all at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field in secret_fields(self.settings_cls):
            variable = file_variable(field)
            path = os.environ.get(variable)
            if path is None:
                continue
            if field.upper() in os.environ:
                values[field] = self.Problem(f"{field.upper()} and {variable} are both set")
            elif not path:
                values[field] = self.Problem(f"{variable} is empty: give the path of a file")
            else:
                try:
                    values[field] = read_secret_file(variable, Path(path))
                except SecretFileError as exc:
                    values[field] = self.Problem(str(exc))
        return values
