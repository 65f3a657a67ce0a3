"""Factor III: config from the environment only; bad config stops a process, clearly and safely."""

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package }}.core.secret_files import secret_fields
from {{ cookiecutter.package }}.core.settings import Settings

from .conftest import PROCFILE, ROOT, Outcome

GOOD = {
    "DATABASE_URL": "postgres://app:db-password-123@db.internal:5432/app",
    "REDIS_URL": "redis://:redis-password-456@cache.internal:6379/0",
    "SECRET_KEY": "k" * 40,
}


def test_platform_postgres_url_is_normalised_for_sqlalchemy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    url = settings.database_url.get_secret_value()
    assert url == "postgresql+psycopg://app:db-password-123@db.internal:5432/app"
    assert settings.celery_broker_url == GOOD["REDIS_URL"]  # broker defaults to REDIS_URL
    # Secrets never appear in a repr (and so never in a log line or traceback).
    for secret in ("db-password-123", "redis-password-456", GOOD["SECRET_KEY"]):
        assert secret not in repr(settings)


def test_broker_url_swaps_the_broker_by_config_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**GOOD, "BROKER_URL": "amqp://guest:guest@mq:5672//"}.items():
        monkeypatch.setenv(name, value)
    assert Settings().celery_broker_url == "amqp://guest:guest@mq:5672//"


def test_task_limits_must_stay_below_the_visibility_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {**GOOD, "BROKER_VISIBILITY_TIMEOUT_SECONDS": "60"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="TASK_TIME_LIMIT_SECONDS must be below"):
        Settings()


@pytest.mark.parametrize(
    "value",
    [
        *("60/minute", "10 per second", "5/5 minutes", " 1 PER 2 Hours ", "0/day", "3/month"),
        *("7 per 1 year", "2/seconds", "60/minute\n"),
        *("", "60", "/minute", "60/", "60/fortnight", "sixty/minute", "60 minute", "-1/minute"),
        *("60/minute,", "60/minute 5", "1.5/minute", "60/m", "60//minute"),
    ],
)
def test_rate_limits_are_checked_as_the_limits_package_reads_them(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # settings.py checks them by their grammar, without importing `limits` (see _rate_limit).
    from limits import parse

    try:
        parse(value)
        readable = True
    except ValueError:
        readable = False
    for name, good in GOOD.items():
        monkeypatch.setenv(name, good)
    monkeypatch.setenv("RATE_LIMIT", value)
    try:
        Settings()
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == readable


def test_several_rate_limits_in_one_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # `limits` would read the first and drop the rest without a word.
    for name, good in {**GOOD, "RATE_LIMIT": "5/minute;100/day"}.items():
        monkeypatch.setenv(name, good)
    with pytest.raises(ValidationError, match="rate_limit"):
        Settings()


def run_process(kind: str, env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        ["/bin/sh", "-c", PROCFILE[kind]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


@pytest.mark.timing
@pytest.mark.parametrize("kind", ["web", "worker", "clock", "release"])
def test_missing_config_names_every_variable(kind: str, base_env: dict[str, str]) -> None:
    env = {k: v for k, v in base_env.items() if k not in GOOD}
    code, output, elapsed = run_process(kind, env)
    assert code == 78, output
    assert elapsed < 3
    assert "Traceback" not in output
    [line] = output.strip().splitlines()  # one message, as one JSON log line
    event = json.loads(line)["event"]
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        assert name in event


@pytest.mark.timing
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root:db-password-123@db:3306/app"),
        ("DATABASE_URL", "not a url db-password-123"),
        ("REDIS_URL", "http://:redis-password-456@cache:6379"),
        ("BROKER_URL", "kafka://user:broker-password-789@mq:9092"),
        ("SECRET_KEY", "short-secret-abc"),
        ("MFA_ENCRYPTION_KEY", "short-mfa-key-abc"),
        ("MFA_ENCRYPTION_KEY_FALLBACKS", "k" * 40 + ",short-old-key-abc"),
        ("PORT", "eighty"),
        ("WEB_CONCURRENCY", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("FLAG_SIGN_UP", "sometimes"),
        ("FLAGS_RELOAD_SECONDS", "0"),
        ("FORWARDED_ALLOW_IPS", "*"),  # would let a client write its own address
        ("REDIS_KEY_PREFIX", "two words"),
    ],
)
def test_malformed_config_is_named_without_echoing_secrets(
    variable: str, value: str, base_env: dict[str, str], load_config: Callable[..., Outcome]
) -> None:
    env = {**base_env, variable: value}
    # The first case as the web process itself, the others as it reads them (see `load_config`).
    as_a_process = (variable, value) == ("DATABASE_URL", "mysql://root:db-password-123@db:3306/app")
    code, output, elapsed = run_process("web", env) if as_a_process else load_config(env)
    assert code == 78, output
    assert elapsed < 3
    assert "Traceback" not in output
    assert variable in json.loads(output)["event"]
    secrets = ("db-password-123", "redis-password-456", "broker-password-789", "short-secret")
    for secret in (*secrets, "short-mfa-key", "short-old-key", "k" * 40):
        assert secret not in output


def test_several_bad_variables_are_all_named_at_once(
    base_env: dict[str, str], load_config: Callable[..., Outcome]
) -> None:
    env = {**base_env, "SECRET_KEY": "x", "PORT": "-1", "REDIS_URL": "nope"}
    code, output, _ = load_config(env)
    assert code == 78
    event = json.loads(output)["event"]
    assert all(name in event for name in ("SECRET_KEY", "PORT", "REDIS_URL"))


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL", "SECRET_KEY"])
def test_each_required_variable_is_required(
    missing: str, base_env: dict[str, str], load_config: Callable[..., Outcome]
) -> None:
    env = {k: v for k, v in base_env.items() if k != missing}
    code, output, _ = load_config(env)
    assert code == 78, output
    event = json.loads(output)["event"]
    assert missing in event
    assert [name for name in GOOD if name in event] == [missing]


def test_every_variable_is_documented() -> None:
    env_example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for field in Settings.model_fields:
        variable = field.upper()
        assert re.search(rf"^#? ?{variable}=", env_example, re.M), f"{variable}: .env.example"
        assert f"`{variable}`" in readme, f"{variable}: README.md"


SECRET_FIELDS = {"database_url", "redis_url", "broker_url", "secret_key", "secret_key_fallbacks"}


def test_every_secret_setting_can_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Every SecretStr field has its NAME_FILE, with nothing to declare: a secret added later
    # (SMTP_URL once mail exists) gets one too.
    assert set(secret_fields(Settings)) >= SECRET_FIELDS
    old_key, older_key = "o" * 40, "p" * 40
    contents = {
        "DATABASE_URL": GOOD["DATABASE_URL"] + "\n",  # the trailing newline is not the value's
        "REDIS_URL": GOOD["REDIS_URL"],
        "BROKER_URL": "amqp://guest:broker-password-789@mq:5672//\r\n",
        "SECRET_KEY": GOOD["SECRET_KEY"] + "\n",
        "SECRET_KEY_FALLBACKS": f"{old_key}\n{older_key}\n",  # one a line, or comma-separated
    }
    for name, text in contents.items():
        (tmp_path / name).write_text(text)
        monkeypatch.setenv(f"{name}_FILE", str(tmp_path / name))
    settings = Settings()
    assert settings.database_url.get_secret_value().endswith("db-password-123@db.internal:5432/app")
    assert settings.redis_url.get_secret_value() == GOOD["REDIS_URL"]
    assert settings.celery_broker_url == "amqp://guest:broker-password-789@mq:5672//"
    assert settings.secret_key.get_secret_value() == GOOD["SECRET_KEY"]
    assert [k.get_secret_value() for k in settings.secret_key_fallbacks] == [old_key, older_key]
    # Where each came from is kept: the processes read the URLs' credentials again from there.
    assert settings.secret_file("database_url") == tmp_path / "DATABASE_URL"
    assert settings.secret_file("redis_url") == tmp_path / "REDIS_URL"


@pytest.mark.timing
def test_a_variable_and_its_file_together_are_refused_naming_both(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "key").write_text("f" * 40)
    env = {**base_env, "SECRET_KEY_FILE": str(tmp_path / "key"), "PORT": "eighty"}
    code, output, elapsed = run_process("web", env)
    assert code == 78, output
    assert elapsed < 3
    assert "Traceback" not in output
    event = json.loads(output)["event"]
    assert "SECRET_KEY and SECRET_KEY_FILE are both set" in event
    assert "PORT" in event  # reported with every other bad variable, not instead of them
    assert "f" * 40 not in output
    assert base_env["SECRET_KEY"] not in output


@pytest.mark.timing
@pytest.mark.parametrize("problem", ["missing", "a directory", "empty", "not a URL"])
@pytest.mark.parametrize("variable", ["DATABASE_URL", "REDIS_URL", "SECRET_KEY"])
def test_a_secret_file_that_cannot_be_used_is_named_never_its_content(
    base_env: dict[str, str],
    tmp_path: Path,
    variable: str,
    problem: str,
    load_config: Callable[..., Outcome],
) -> None:
    path = tmp_path / "secret"
    content = "s3cr3t-content-never-printed"
    if problem == "a directory":
        path.mkdir()
    elif problem == "empty":
        path.write_text("\n")
    elif problem == "not a URL":
        path.write_text(content + "\n")
    env = {k: v for k, v in base_env.items() if k != variable}
    env = {**env, f"{variable}_FILE": str(path)}
    # One case as the worker process itself, the others as it reads them (see `load_config`).
    as_a_process = (variable, problem) == ("SECRET_KEY", "not a URL")
    code, output, elapsed = run_process("worker", env) if as_a_process else load_config(env)
    assert code == 78, output
    assert elapsed < 3
    assert "Traceback" not in output
    [line] = output.strip().splitlines()
    event = json.loads(line)["event"]
    # A file that cannot be read is named by its variable; content that is no good, by the
    # setting, as it would be from the environment.
    expected = {
        "missing": f"{variable}_FILE ({path}): file not found",
        "a directory": f"{variable}_FILE ({path}): file not readable",
        "empty": f"{variable}: must",
        "not a URL": f"{variable}: must",
    }[problem]
    assert expected in event
    assert "required" not in event  # the file was read: the variable is not missing
    assert content not in output
