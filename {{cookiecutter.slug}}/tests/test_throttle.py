"""Login throttles that hold against what attackers really send: many guesses at once, forged
X-Forwarded-For entries, and a fresh IPv6 address for every guess (OWASP ASVS 5 V6.3.1)."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .conftest import PASSWORD, PLAIN_HTTP, Web, new_email

# Each check costs about 0.1 s here, so thirty concurrent guesses overlap for seconds: without
# counting before the check, every one of them passes a check none has been counted in yet.
SLOW_HASH = {"PASSWORD_HASH_TIME_COST": "10"}


def guess(web: Web, email: str, forwarded_for: str) -> int:
    response = httpx.post(
        f"{web.url}/api/v1/session",
        json={"email": email, "password": "not the password"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=60,
        verify=PLAIN_HTTP,
    )
    return response.status_code


def burst(web: Web, attempts: list[tuple[str, str]]) -> list[int]:
    """All the attempts at once, (email, X-Forwarded-For) each; their statuses."""
    with ThreadPoolExecutor(len(attempts)) as pool:
        return list(pool.map(lambda attempt: guess(web, *attempt), attempts))


def test_thirty_concurrent_guesses_at_one_account_check_at_most_its_limit(
    shared: Callable[..., Any],
) -> None:
    web: Web = shared("web", LOGIN_FAILURES_PER_ACCOUNT="5/5 minutes", **SLOW_HASH)
    web.wait_ready()
    email = web.sign_up()
    codes = burst(web, [(email, f"10.30.0.{n}") for n in range(30)])
    assert codes.count(401) == 5, codes  # five password checks, as the limit says
    assert codes.count(429) == 25, codes


def test_thirty_concurrent_guesses_from_one_address_check_at_most_its_limit(
    shared: Callable[..., Any],
) -> None:
    web: Web = shared("web", LOGIN_FAILURES_PER_ADDRESS="10/minute", **SLOW_HASH)
    web.wait_ready()
    codes = burst(web, [(new_email(), "10.31.0.1") for _ in range(30)])
    assert codes.count(401) == 10, codes
    assert codes.count(429) == 20, codes
    # Only that address is limited; and the owner of an account still gets in from another.
    response = httpx.post(
        f"{web.url}/api/v1/session",
        json={"email": web.sign_up(), "password": PASSWORD},
        headers={"X-Forwarded-For": "10.31.0.2"},
        verify=PLAIN_HTTP,
    )
    assert response.status_code == 201


def test_a_forged_leftmost_forwarded_entry_changes_nothing(shared: Callable[..., Any]) -> None:
    # The test connects from 127.0.0.1, the one trusted proxy (FORWARDED_ALLOW_IPS' default);
    # that proxy appended the address it saw, 203.0.113.9, to whatever the client wrote.
    web: Web = shared("web", LOGIN_FAILURES_PER_ADDRESS="3/minute")
    web.wait_ready()
    codes = [guess(web, new_email(), f"198.51.100.{n}, 203.0.113.9") for n in range(4)]
    assert codes == [401, 401, 401, 429]
    assert guess(web, new_email(), "203.0.113.10") == 401  # a different client is not limited


def test_an_ipv6_client_is_limited_per_64(shared: Callable[..., Any]) -> None:
    web: Web = shared("web", LOGIN_FAILURES_PER_ADDRESS="3/minute")
    web.wait_ready()
    # One host owns a whole /64: a new address for every guess is the same client.
    codes = [guess(web, new_email(), f"2001:db8:7:1::{n:x}") for n in range(1, 5)]
    assert codes == [401, 401, 401, 429]
    assert guess(web, new_email(), "2001:db8:7:2::1") == 401  # the next /64 is someone else
    narrow: Web = shared("web", LOGIN_FAILURES_PER_ADDRESS="3/minute", RATE_LIMIT_IPV6_PREFIX="128")
    narrow.wait_ready()
    assert guess(narrow, new_email(), "2001:db8:7:3::1") == 401
    assert [guess(narrow, new_email(), f"2001:db8:7:3::{n:x}") for n in range(2, 5)] == [401] * 3
