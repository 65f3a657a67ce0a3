"""Send one message to the server SMTP_URL names.

`smtp://host:587` upgrades to TLS when the server offers STARTTLS (`?starttls=required` refuses
to send in the clear); `smtps://host:465` speaks TLS from the first byte. A user and password in
the URL log in. A 4xx answer, a timeout or a lost connection is temporary (TemporaryFailure: the
task retries); a 5xx answer is not, and propagates.
"""

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit


class TemporaryFailure(Exception):
    """The server may take the message later: retry."""


def _is_temporary(exc: Exception) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return False  # the server lacks what SMTP_URL asks for (STARTTLS, AUTH): config
    return isinstance(exc, OSError)  # refused, timed out, disconnected


def _send(url: str, message: EmailMessage, timeout: float) -> None:
    parts = urlsplit(url)
    tls = ssl.create_default_context()
    host = parts.hostname or "localhost"
    client: smtplib.SMTP
    if parts.scheme == "smtps":
        client = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout, context=tls)
    else:
        client = smtplib.SMTP(host, parts.port or 587, timeout=timeout)
    with client:
        client.ehlo()
        if parts.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=tls)
            client.ehlo()
        elif parts.scheme == "smtp" and parse_qs(parts.query).get("starttls") == ["required"]:
            raise smtplib.SMTPNotSupportedError("SMTP_URL requires STARTTLS; the server lacks it")
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)


def send(url: str, message: EmailMessage, timeout: float) -> None:
    try:
        _send(url, message, timeout)
    except Exception as exc:
        if _is_temporary(exc):
            raise TemporaryFailure(type(exc).__name__) from exc
        raise
