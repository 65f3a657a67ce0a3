"""The two WebAuthn ceremonies, with py_webauthn: registration (a new passkey on a logged-in
account) and authentication (a login with one, alone or after the password).

Both require user verification (the authenticator checked a PIN, a fingerprint or a face), so
a passkey is two factors in itself: something held and something known or been. Registration
asks for a discoverable credential, one the authenticator lists by itself, so a login needs no
email first. Attestation is not asked for: which make of authenticator it is matters less, for
a service anyone signs up to, than the privacy of not being told.

Whatever the browser sends is hostile until these checks pass: every way it can fail is
`Refused`, whose message may be shown to the client.

py_webauthn is imported inside the functions that call it, at the first ceremony: at start it
would cost every web process a few MB and tens of milliseconds that only passkey requests use.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog

if TYPE_CHECKING:
    from webauthn.helpers.structs import (
        AuthenticationCredential,
        PublicKeyCredentialDescriptor,
        RegistrationCredential,
    )

from ..settings import Settings

log = structlog.get_logger(__name__)

Options = dict[str, Any]  # PublicKeyCredential{Creation,Request}OptionsJSON, for the browser


class Refused(Exception):
    """The browser's answer does not pass; the message says which check failed."""


@dataclass(frozen=True, slots=True)
class NewCredential:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    backup_eligible: bool
    backed_up: bool
    transports: list[str]
    aaguid: str


@dataclass(frozen=True, slots=True)
class Assertion:
    """A login answer, parsed but not yet verified: which credential it names, for whom."""

    parsed: "AuthenticationCredential"
    credential_id: bytes
    user_handle: bytes | None


@dataclass(frozen=True, slots=True)
class Verified:
    sign_count: int
    backup_eligible: bool
    backed_up: bool


def _json(options: object) -> Options:
    from webauthn import options_to_json

    result: Options = orjson.loads(options_to_json(options))  # type: ignore[arg-type]
    return result


def _descriptors(
    credentials: list[tuple[bytes, list[str]]],
) -> "list[PublicKeyCredentialDescriptor]":
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=credential_id,
            transports=[AuthenticatorTransport(t) for t in transports if t in known],
        )
        for credential_id, transports in credentials
    ]


def registration_options(
    settings: Settings,
    challenge: bytes,
    user_handle: bytes,
    email: str,
    existing: list[tuple[bytes, list[str]]],
) -> Options:
    from webauthn import generate_registration_options
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = generate_registration_options(
        rp_id=settings.passkey_rp_id,
        rp_name=settings.webauthn_rp_name,
        user_id=user_handle,
        user_name=email,
        user_display_name=email,
        challenge=challenge,
        timeout=settings.webauthn_challenge_seconds * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        # The authenticators that hold one of the account's passkeys already say so, rather
        # than make a second one for the same account.
        exclude_credentials=_descriptors(existing),
    )
    return _json(options)


def authentication_options(
    settings: Settings, challenge: bytes, allowed: list[tuple[bytes, list[str]]]
) -> Options:
    """Options for a login: `allowed` empty lets the authenticator offer any passkey it holds
    for this RP (a login with no email), else only those (a second factor)."""
    from webauthn import generate_authentication_options
    from webauthn.helpers.structs import UserVerificationRequirement

    options = generate_authentication_options(
        rp_id=settings.passkey_rp_id,
        challenge=challenge,
        timeout=settings.webauthn_challenge_seconds * 1000,
        allow_credentials=_descriptors(allowed),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return _json(options)


def _challenge_of(client_data_json: bytes) -> bytes:
    from webauthn.helpers import parse_client_data_json

    try:
        return parse_client_data_json(client_data_json).challenge
    except Exception:  # hostile bytes: a parser may fail in ways it did not foresee
        raise Refused("clientDataJSON is not client data") from None


def parse_registration(credential: dict[str, Any]) -> "tuple[RegistrationCredential, bytes]":
    """The parsed answer and the challenge it claims to meet (not yet checked)."""
    from webauthn.helpers import parse_registration_credential_json

    try:
        parsed = parse_registration_credential_json(credential)
    except Exception:
        raise Refused("not a registration credential (PublicKeyCredential.toJSON())") from None
    return parsed, _challenge_of(parsed.response.client_data_json)


def parse_assertion(credential: dict[str, Any]) -> tuple[Assertion, bytes]:
    """The parsed answer and the challenge it claims to meet (not yet checked)."""
    from webauthn.helpers import parse_authentication_credential_json

    try:
        parsed = parse_authentication_credential_json(credential)
    except Exception:
        raise Refused("not an authentication credential (PublicKeyCredential.toJSON())") from None
    assertion = Assertion(parsed, parsed.raw_id, parsed.response.user_handle)
    return assertion, _challenge_of(parsed.response.client_data_json)


def verify_registration(
    settings: Settings, parsed: "RegistrationCredential", challenge: bytes
) -> NewCredential:
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import WebAuthnException
    from webauthn.helpers.structs import CredentialDeviceType

    try:
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=settings.passkey_rp_id,
            expected_origin=list(settings.passkey_origins),
            require_user_verification=True,
        )
    except WebAuthnException as exc:
        raise Refused(str(exc)) from None
    except Exception as exc:  # a parser of hostile bytes may fail in ways it did not foresee
        log.info("passkey registration unreadable", error=repr(exc))
        raise Refused("the registration answer cannot be read") from None
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        transports=[t.value for t in parsed.response.transports or []],
        aaguid=verified.aaguid,
    )


def verify_assertion(
    settings: Settings, assertion: Assertion, challenge: bytes, public_key: bytes
) -> Verified:
    """Check the answer's signature and flags. The counter is not compared here but in
    store.py, against the stored one in the same UPDATE that moves it: given 0 as the current
    count, the library's own comparison never refuses."""
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import WebAuthnException
    from webauthn.helpers.structs import CredentialDeviceType

    try:
        verified = verify_authentication_response(
            credential=assertion.parsed,
            expected_challenge=challenge,
            expected_rp_id=settings.passkey_rp_id,
            expected_origin=list(settings.passkey_origins),
            credential_public_key=public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except WebAuthnException as exc:
        raise Refused(str(exc)) from None
    except Exception as exc:
        log.info("passkey assertion unreadable", error=repr(exc))
        raise Refused("the authentication answer cannot be read") from None
    return Verified(
        sign_count=verified.new_sign_count,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
    )
