"""Refuse answers that would render a project that cannot be installed or imported.

Cookiecutter deletes the half-made directory when this hook exits non-zero, so a refusal
leaves nothing behind. Each refusal is one line on stderr naming the answer and the reason.
"""

import keyword
import re
import sys

SLUG = {{cookiecutter.slug | jsonify}}
PACKAGE = {{cookiecutter.package | jsonify}}

# Import names the generated project depends on; a package named like one would shadow it.
DEPENDENCIES = {
    "alembic", "amqp", "anyio", "billiard", "celery", "click", "fastapi", "httptools", "httpx",
    "kombu", "mypy", "orjson", "prometheus_client", "psycopg", "pydantic", "pydantic_core",
    "pydantic_settings", "pytest", "redbeat", "redis", "ruff", "sqlalchemy", "starlette",
    "structlog", "tests", "uvicorn", "uvloop", "vine",
}  # fmt: skip


def problem() -> str | None:
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", SLUG):
        return (
            f"slug {SLUG!r} is not valid: use lowercase letters, digits and single hyphens, "
            "starting with a letter (e.g. acme-billing)"
        )
    if not (PACKAGE.isidentifier() and PACKAGE.isascii() and PACKAGE.lower() == PACKAGE):
        return f"package {PACKAGE!r} is not a valid lowercase Python identifier (e.g. acme_billing)"
    if keyword.iskeyword(PACKAGE) or keyword.issoftkeyword(PACKAGE):
        return f"package {PACKAGE!r} is a Python keyword"
    if PACKAGE in sys.stdlib_module_names:
        return f"package {PACKAGE!r} would shadow the standard library module of that name"
    if PACKAGE in DEPENDENCIES:
        return f"package {PACKAGE!r} would shadow the dependency {PACKAGE!r}"
    return None


if __name__ == "__main__":
    reason = problem()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(1)
