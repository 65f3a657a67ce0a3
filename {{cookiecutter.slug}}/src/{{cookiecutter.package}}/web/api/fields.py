"""Field types for what clients send, bounded by what the database can store.

Hostile input is refused here, at the edge, with a 422 that names the field: a value the
database would reject fails later as a database error, after work was done, and (uncaught) as a
500. Each type says its bound in /openapi.json too, so a client knows it before it tries.
"""

from typing import Annotated

from annotated_types import Ge, Le
from pydantic import StringConstraints

# An `Integer` primary key column is PostgreSQL's int4: 2**31 - 1 is the largest id there is.
INT4_MAX = 2**31 - 1
RowId = Annotated[int, Ge(1), Le(INT4_MAX)]

# PostgreSQL text cannot hold NUL (U+0000). The pattern also refuses a lone surrogate (U+D800 to
# U+DFFF, which JSON can spell as an escape) as invalid Unicode: UTF-8 cannot encode one.
StorableText = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
