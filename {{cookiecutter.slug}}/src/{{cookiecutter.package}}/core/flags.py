"""Feature flags: deploy is not release.

New code ships switched off, then is released (to everyone, to a share of users, to staging
only) or switched off again by config, never by a new build: factor III. Every flag is declared
below, once, with its default, its owner and the date by which it goes. tests/test_flags.py
fails when a flag is past that date, when no code uses it any more, and when the environment or
the flag file names a flag not declared here: stale flags are found by CI, not by archaeology.

The code asks `flags.enabled(NOTE_SUMMARY, user_id)`, which asks the OpenFeature SDK
(`get_boolean_details`, with the user as the targeting key). The provider behind the SDK is set
in `create_flags`: core/flag_provider.py by default; flagd, LaunchDarkly or any other OpenFeature
provider takes its place there without a change anywhere else.
"""

import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date

import structlog
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from prometheus_client import CollectorRegistry

from .flag_provider import LocalProvider
from .metrics import FlagMetrics
from .settings import FLAG_PREFIX, Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Flag:
    key: str  # kebab-case: `note-summary` is FLAG_NOTE_SUMMARY in the environment
    default: bool  # the answer when nothing sets the flag, and whenever evaluation fails
    owner: str  # who decides when it is released, and removes it
    expires: date  # remove the flag by then, or renew it on purpose
    description: str

    @property
    def variable(self) -> str:
        return FLAG_PREFIX + self.key.upper().replace("-", "_")


# A release flag: the new enrichment ships dark, then reaches users as the flag file says.
NOTE_SUMMARY = Flag(
    key="note-summary",
    default=False,
    owner="notes",
    expires=date(2027, 6, 30),
    description="the worker stores each note's first sentence as its summary; the API shows it",
)
# An operations flag: a kill switch for the most expensive endpoint (one argon2id hash each).
SIGN_UP = Flag(
    key="sign-up",
    default=True,
    owner="accounts",
    expires=date(2027, 12, 31),
    description="off: POST /api/v1/users answers 503 before any work, e.g. during a sign-up flood",
)
DECLARED = {flag.key: flag for flag in (NOTE_SUMMARY, SIGN_UP)}

# The flags the current request evaluated, and the variant each gave: the web's access line
# shows them (web/observe.py sets a fresh dict per request). None outside a request.
EVALUATED: ContextVar[dict[str, str] | None] = ContextVar("flags_evaluated", default=None)


class Flags:
    """The flags this process evaluates, counted by flag and variant.

    One evaluation through the SDK costs 10 to 30 µs of CPU (its hooks and context merging, then
    the rule; measured by the template's bench/flags.py), against a budget of 10 µs on the
    request path. So each answer is remembered per flag and user until the provider reports a
    configuration change, for a minute at most (rules may depend on the time of day).
    """

    MEMO_SECONDS = 60.0
    MEMO_SIZE = 10_000  # answers remembered; all are forgotten when full, then relearned

    def __init__(self, client: OpenFeatureClient, metrics: FlagMetrics) -> None:
        self.client = client
        self.metrics = metrics
        self._memo: dict[tuple[str, str | None], tuple[float, bool, str]] = {}
        self._generation = 0  # bumped at each change, so an answer begun before is not kept
        self._errors_logged: set[tuple[str, str]] = set()
        client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, self._forget)

    def _forget(self, details: EventDetails) -> None:
        self._generation += 1
        self._memo = {}
        self._errors_logged = set()

    def enabled(self, flag: Flag, user_id: int | None) -> bool:
        """Whether `flag` is on for this user; None (anonymous) has no targeting key, so a
        percentage rollout gives its default variant. Never raises: a failed evaluation gives
        the declared default, and is counted."""
        who = None if user_id is None else str(user_id)
        now = time.monotonic()
        memo = self._memo.get((flag.key, who))
        if memo is not None and memo[0] > now:
            _, value, variant = memo
        else:
            value, variant = self._evaluate(flag, who, now)
        self.metrics.count(flag.key, variant)
        if (evaluated := EVALUATED.get()) is not None:
            evaluated[flag.key] = variant
        return value

    def _evaluate(self, flag: Flag, who: str | None, now: float) -> tuple[bool, str]:
        generation = self._generation
        context = EvaluationContext(targeting_key=who)
        details = self.client.get_boolean_details(flag.key, flag.default, context)
        if details.error_code is not None:  # the SDK answered with our default
            error = str(details.error_code)
            self.metrics.error(flag.key, error)
            if (flag.key, error) not in self._errors_logged:  # once per error and flag change
                self._errors_logged.add((flag.key, error))
                log.warning(
                    "flag evaluation failed, using the default",
                    flag=flag.key,
                    error=error,
                    message=details.error_message,
                )
            return flag.default, "error"
        variant = details.variant or "default"  # no variant: nothing set the flag
        if generation == self._generation:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo = {}
            self._memo[(flag.key, who)] = (now + self.MEMO_SECONDS, details.value, variant)
        return details.value, variant

    def close(self) -> None:
        api.shutdown()  # stops the provider's file watcher


def create_flags(settings: Settings, registry: CollectorRegistry) -> Flags:
    """Install this process's OpenFeature provider (the SDK keeps one per process) and return
    the Flags the code asks. Call once per process, after any fork: the provider has a thread."""
    provider = LocalProvider(
        settings.env_flags, settings.flags_file, settings.flags_reload_seconds, DECLARED
    )
    api.set_provider_and_wait(provider)  # reads the flag file once before the first question
    return Flags(api.get_client(), FlagMetrics(registry))
