"""Claim or release a Redis logical database for one run, the way the generated tests do.

    python scripts/redis_db.py claim REDIS_URL [PREFERRED]   # prints the claimed DB, emptied
    python scripts/redis_db.py release REDIS_URL DB          # empties it, drops the claim

A claim is a `test-claim:N` key in DB 0 (expiring after an hour, should a run die), so a
benchmark, a template test and a generated project's tests on one Redis never flush each
other's data. Run it with a rendered project's interpreter: the template's venv has no redis-py.
"""

import sys

import redis


def claim(url: str, preferred: int | None) -> int:
    admin = redis.Redis.from_url(url, db=0)
    order = [preferred] if preferred else []
    for db in [*order, *(n for n in range(15, 0, -1) if n != preferred)]:
        if admin.set(f"test-claim:{db}", "1", nx=True, ex=3600):
            redis.Redis.from_url(url, db=db).flushdb()
            return db
    sys.exit("every Redis logical database 1-15 is claimed by another run")


def release(url: str, db: int) -> None:
    redis.Redis.from_url(url, db=db).flushdb()
    redis.Redis.from_url(url, db=0).delete(f"test-claim:{db}")


if __name__ == "__main__":
    action, url, *rest = sys.argv[1:]
    if action == "claim":
        print(claim(url, int(rest[0]) if rest else None))
    else:
        release(url, int(rest[0]))
