"""A schema behind the code: a column or table this release reads that its migration has not
added yet (the Deployments rolled before the release Job ran, or a flag was turned on too soon).

Not a bug to dead-letter nor a 500: it ends by itself once `release` has run, so web answers
503 (retry) and the worker retries the task. See README, "Releases side by side".
"""

import psycopg.errors
import sqlalchemy.exc

MISSING = (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable)


def schema_behind(exc: BaseException) -> bool:
    return isinstance(exc, sqlalchemy.exc.ProgrammingError) and isinstance(exc.orig, MISSING)
