"""The second factors of an account, in PostgreSQL: enrol a TOTP authenticator, check a code,
replace the recovery codes, turn everything off.

A TOTP code is claimed by one UPDATE that moves `last_step` forward only if the code's step is
later than it, and a recovery code by one UPDATE of an unused row: two requests with the same
code cannot both pass. Every function leaves the commit to its caller, so that what a code
allows (a session, a change) and the code's use commit together, or neither does.
"""

from dataclasses import dataclass
from typing import Literal

import structlog
from sqlalchemy import ColumnElement, delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Passkey, RecoveryCode, TotpFactor
from ..schema import schema_behind
from . import recovery, totp
from .secretbox import SecretBox, Unreadable

log = structlog.get_logger(__name__)


Method = Literal["totp", "passkey"]


def _owner(user_id: int) -> str:
    return f"totp:{user_id}"  # what the sealed secret is bound to (secretbox.py)


@dataclass(frozen=True, slots=True)
class Status:
    totp: bool
    recovery_codes_left: int


async def second_factors(db: AsyncSession, user_id: int) -> list[Method]:
    """The second factors a password login of this user must give one of: "totp" (an active
    authenticator app; its recovery codes work too) and "passkey" (core/passkeys/; one counts
    as a second factor by itself). Empty: the password is enough.

    On a database whose release has not run migration 0007 (passkeys) or 0006 (TOTP) yet (the
    Deployments rolled first), a missing table has no rows: logins go on as before it."""
    totp_on = exists().where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None))
    passkey = exists().where(Passkey.user_id == user_id)
    attempts: tuple[tuple[tuple[Method, ...], tuple[ColumnElement[bool], ...]], ...] = (
        (("totp", "passkey"), (totp_on, passkey)),
        (("totp",), (totp_on,)),
    )
    for names, columns in attempts:
        try:
            row = (await db.execute(select(*columns))).one()
        except ProgrammingError as exc:
            if not schema_behind(exc):
                raise
            await db.rollback()
            continue
        return [name for name, on in zip(names, row, strict=True) if on]
    return []


async def status(db: AsyncSession, user_id: int) -> Status:
    on = select(TotpFactor.user_id).where(
        TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)
    )
    left = select(func.count()).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
    )
    row = (await db.execute(select(exists(on), left.scalar_subquery()))).one()
    return Status(totp=row[0], recovery_codes_left=row[1])


async def start_totp(db: AsyncSession, box: SecretBox, user_id: int) -> bytes | None:
    """A new secret, not active until confirmed (an earlier unconfirmed one is replaced); None
    if the user has an active one."""
    secret = totp.new_secret()
    sealed = box.seal(secret, _owner(user_id))
    statement = (
        upsert(TotpFactor)
        .values(user_id=user_id, secret=sealed)
        .on_conflict_do_update(
            index_elements=[TotpFactor.user_id],
            set_={"secret": sealed, "created_at": func.now(), "last_step": 0},
            where=TotpFactor.confirmed_at.is_(None),
        )
        .returning(TotpFactor.user_id)
    )
    return secret if (await db.execute(statement)).first() is not None else None


async def check_totp(
    db: AsyncSession, box: SecretBox, user_id: int, code: str, confirming: bool = False
) -> bool:
    """Claim a code of the user's active authenticator (or, `confirming`, of the one being
    enrolled, which it then activates). A code already used, or older than one used, fails."""
    row = (
        await db.execute(
            select(TotpFactor.secret, TotpFactor.last_step, TotpFactor.confirmed_at).where(
                TotpFactor.user_id == user_id
            )
        )
    ).one_or_none()
    if row is None or (row.confirmed_at is None) != confirming:
        return False
    try:
        secret, stale = box.open(row.secret, _owner(user_id))
    except Unreadable:
        # MFA_ENCRYPTION_KEY changed with the old one left out of its fallbacks.
        log.error("totp secret unreadable: no key opens it", user_id=user_id)
        return False
    step = totp.matching_step(secret, code)
    if step is None or step <= row.last_step:
        return False
    values: dict[str, object] = {"last_step": step}
    if stale:  # opened with a fallback key: seal it with the current one
        values["secret"] = box.seal(secret, _owner(user_id))
    if confirming:
        values["confirmed_at"] = func.now()
    claimed = await db.execute(
        update(TotpFactor)
        .where(TotpFactor.user_id == user_id, TotpFactor.last_step < step)
        .values(**values)
        .returning(TotpFactor.user_id)
    )
    return claimed.first() is not None


async def use_recovery_code(db: AsyncSession, user_id: int, code: str) -> bool:
    normalised = recovery.normalise(code)
    if normalised is None:
        return False
    used = await db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == recovery.digest(normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=func.now())
        .returning(RecoveryCode.id)
    )
    return used.first() is not None


async def check_code(db: AsyncSession, box: SecretBox, user_id: int, code: str) -> bool:
    """A code from the authenticator, or one of the recovery codes."""
    if len(code.strip()) == totp.DIGITS:
        return await check_totp(db, box, user_id, code.strip())
    return await use_recovery_code(db, user_id, code)


async def replace_recovery_codes(db: AsyncSession, user_id: int) -> list[str]:
    """New recovery codes; the old ones, used or not, stop working."""
    codes = recovery.new_codes()
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    await db.execute(
        insert(RecoveryCode),
        [
            {"user_id": user_id, "code_hash": recovery.digest(recovery.normalise(c) or "")}
            for c in codes
        ],
    )
    return codes


async def remove_all(db: AsyncSession, user_id: int) -> bool:
    """Turn the second factor off: the authenticator and the recovery codes go. Whether there
    was one."""
    removed = await db.execute(
        delete(TotpFactor).where(TotpFactor.user_id == user_id).returning(TotpFactor.user_id)
    )
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    return removed.first() is not None
