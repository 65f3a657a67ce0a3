"""The `release` process: apply every pending migration, then exit. Running it again is a no-op.

Factor XII, admin processes: it runs from the same build and config as web and worker, as a
one-off (a Procfile `release` phase, a compose one-shot service, a Kubernetes Job).
"""

from importlib.resources import files

import structlog
from alembic import command
from alembic.config import Config

from ..core.logging import configure_logging
from ..core.settings import Settings, load_settings

log = structlog.get_logger(__name__)


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("{{ cookiecutter.package }}.core") / "migrations"))
    config.attributes["settings"] = settings
    return config


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    command.upgrade(alembic_config(settings), "head")
    log.info("migrations applied")
