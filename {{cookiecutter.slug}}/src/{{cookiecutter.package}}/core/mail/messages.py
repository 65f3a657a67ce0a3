"""Mails from templates: `templates/<kind>.txt` (its first line is the subject) and
`templates/<kind>.html`, filled with string.Template. Every value put into the HTML part is
escaped first, so nothing a user typed can become markup; and no header carries anything but the
fixed subject and the validated addresses, so nothing can become a header.
"""

import html
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).parent / "templates"
# The kinds of mail, each a pair of templates: a test checks that each has both.
KINDS = (
    "verify-email",
    "confirm-new-email",
    "email-change-notice",
    "reset-password",
    "password-changed",
    "account-exists",
    "sign-in-changed",
)


def compose(
    kind: str, sender: str, to: str, message_id: str, values: dict[str, str]
) -> EmailMessage:
    subject, _, text = (TEMPLATES / f"{kind}.txt").read_text().partition("\n\n")
    escaped = {name: html.escape(value) for name, value in values.items()}
    message = EmailMessage()
    message["Subject"] = subject.strip()
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(usegmt=True)
    # The same id whenever this outbox record is sent: a server that saw it once drops a copy.
    domain = parseaddr(sender)[1].rpartition("@")[2]
    message["Message-ID"] = f"<{message_id}@{domain}>"
    message.set_content(Template(text).substitute(values))
    message.add_alternative(
        Template((TEMPLATES / f"{kind}.html").read_text()).substitute(escaped), subtype="html"
    )
    return message
