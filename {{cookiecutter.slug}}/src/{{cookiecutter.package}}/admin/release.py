"""The `release` process: apply every pending migration, then exit. Running it again is a no-op.

Factor XII, admin processes: it runs from the same build and config as web and worker, as a
one-off (a Procfile `release` phase, a compose one-shot service, a Kubernetes Job).
"""

from importlib.resources import files

import structlog
from alembic import command
from alembic.config import Config

from ..core.logging import configure_logging
from ..core.migration_lock import MigrationLockBusy
from ..core.settings import Settings, fail, load_settings

log = structlog.get_logger(__name__)

EX_TEMPFAIL = 75  # sysexits.h: try again later


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("{{ cookiecutter.package }}.core") / "migrations"))
    config.attributes["settings"] = settings
    return config


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        command.upgrade(alembic_config(settings), "head")
    except MigrationLockBusy as exc:
        # Not a failed migration: nothing was applied. A retry (the Job's backoff) may succeed.
        fail(f"{exc}; nothing applied (RELEASE_WAIT_SECONDS bounds the wait)", EX_TEMPFAIL)
    log.info("migrations applied")
