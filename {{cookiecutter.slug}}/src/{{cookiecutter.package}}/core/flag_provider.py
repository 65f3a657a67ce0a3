"""The default OpenFeature provider: flags from the environment and a file, nothing to run.

Each evaluation asks, in order:
1. the environment: `FLAG_<NAME>=on|off` (read once at start, by settings.py) pins a flag for
   this deploy, e.g. on in staging and off in production;
2. the flag file named by FLAGS_FILE, in flagd's JSON format (https://flagd.dev/reference/
   flag-definitions/): targeting rules and percentage rollouts, evaluated in this process by
   openfeature-flagd-core, the evaluator the flagd provider's in-process mode uses itself;
3. otherwise the caller's default, which the code declares (core/flags.py).

The file is read again every FLAGS_RELOAD_SECONDS by a thread, and swapped in whole when it
changed. A file that does not parse is refused with one log line, and the flags read before stay
in force. Its bytes are compared rather than its mtime: a Kubernetes ConfigMap update (a symlink
swap), `cp -p` or a second edit within the filesystem's timestamp granularity are all seen.

Another provider (flagd, LaunchDarkly, ...) replaces this one in `core/flags.create_flags`; the
code that asks for flags does not change.
"""

import json
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import FlagNotFoundError, OpenFeatureError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

if TYPE_CHECKING:
    # flagd's rule evaluator, with its JSON Logic, hashing and semver packages, is imported only
    # when there is a flag file to evaluate (parse_flag_file): most processes have none.
    from openfeature.contrib.tools.flagd.core import FlagdCore

log = structlog.get_logger(__name__)

T = TypeVar("T")


class FlagFileError(ValueError):
    """The flag file cannot be used; the message says where and why."""


def parse_flag_file(raw: bytes) -> tuple["FlagdCore", list[str]]:
    """An evaluator holding the file's flags and their keys, or FlagFileError naming a problem."""
    from openfeature.contrib.tools.flagd.core import FlagdCore  # see the import above

    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError: line and column
        raise FlagFileError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("flags"), dict):
        raise FlagFileError('must be a JSON object with a "flags" object')
    evaluator = FlagdCore()
    try:
        evaluator.set_flags(json.dumps(data))
    except OpenFeatureError:
        # flagd-core's messages do not say which flag: find it by parsing them one by one.
        for key, flag in data["flags"].items():
            try:
                FlagdCore().set_flags({"flags": {key: flag}})
            except OpenFeatureError as exc:
                raise FlagFileError(f"flag {key!r}: {exc.error_message or 'invalid'}") from None
        raise FlagFileError("not a valid flagd flag file") from None
    return evaluator, sorted(data["flags"])


class LocalProvider(AbstractProvider):
    def __init__(
        self,
        env_flags: Mapping[str, bool],
        path: Path | None,
        reload_seconds: float,
        declared: Collection[str],
    ) -> None:
        self.env_flags = dict(env_flags)
        self.path = path
        self.reload_seconds = reload_seconds
        self.declared = declared
        self._file: FlagdCore | None = None  # no flags until the file is read
        # What the last check read (or why it could not), good or bad: compared at each check.
        self._seen: bytes | str | None = None
        self._stop = threading.Event()

    def get_metadata(self) -> Metadata:
        return Metadata(name="environment and flag file")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if self.env_flags:
            log.info("flags set by the environment", flags=self.env_flags)
        if undeclared := sorted(set(self.env_flags) - set(self.declared)):
            log.warning("FLAG_ variables name flags the code does not declare", flags=undeclared)
        if self.path is None:
            return
        self.reload()
        # A daemon thread: it holds nothing that needs closing, and it must never delay an exit.
        threading.Thread(target=self._watch, name="flag-file", daemon=True).start()

    def shutdown(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_seconds):
            self.reload()

    def reload(self) -> None:
        """Read the file; swap its flags in if it changed and parses, else keep the old ones."""
        assert self.path is not None
        try:
            seen: bytes | str = self.path.read_bytes()
        except OSError as exc:
            seen = f"cannot be read: {exc.strerror}"
        if seen == self._seen:
            return  # unchanged, or refused already: one log line per change, not per check
        self._seen = seen
        try:
            if isinstance(seen, str):
                raise FlagFileError(seen)
            evaluator, keys = parse_flag_file(seen)
        except FlagFileError as exc:
            log.error(
                "flag file refused, the last good flags stay", path=str(self.path), error=str(exc)
            )
            return
        self._file = evaluator  # one reference swapped: an evaluation sees old or new, whole
        log.info("flag file loaded", path=str(self.path), flags=keys)
        if undeclared := sorted(set(keys) - set(self.declared)):
            log.warning("the flag file names flags the code does not declare", flags=undeclared)
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=keys))

    def _resolve(
        self, key: str, default: T, context: EvaluationContext | None, kind: str
    ) -> FlagResolutionDetails[T]:
        if kind == "boolean" and key in self.env_flags:
            value = self.env_flags[key]
            return FlagResolutionDetails(
                value,  # type: ignore[arg-type]  # T is bool on this path
                variant="on" if value else "off",
                reason=Reason.STATIC,
            )
        evaluator = self._file
        if evaluator is None:  # no flag file (or none read yet): the code's default is the answer
            return FlagResolutionDetails(default, reason=Reason.DEFAULT)
        resolve = getattr(evaluator, f"resolve_{kind}_value")
        try:
            return resolve(key, default, context)  # type: ignore[no-any-return]
        except FlagNotFoundError:  # in neither place: the code's default is the answer
            return FlagResolutionDetails(default, reason=Reason.DEFAULT)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Any,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Any]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")
