"""The latest mails `make run`'s local mail catcher received (dev/services.py), with their links.

python -m dev.mail [--data DIR] [N]      make mail     the last N (default 5), newest last
"""

import argparse
import mailbox
import re
import sys
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / ".data"  # as dev/services.py's --data
LINK = re.compile(r"https?://\S+")


def latest(maildir: Path, count: int) -> list[EmailMessage]:
    if not maildir.exists():
        return []
    box = mailbox.Maildir(maildir, create=False)
    parse = BytesParser(policy=policy.default, _class=EmailMessage).parsebytes
    messages = [parse(box.get_bytes(key)) for key in box.iterkeys()]
    return sorted(messages, key=lambda m: m["Date"].datetime)[-count:]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.mail", description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="dev.services' --data")
    parser.add_argument("count", type=int, nargs="?", default=5)
    args = parser.parse_args(argv)
    maildir = args.data / "mail"
    messages = latest(maildir, args.count)
    if not messages:
        print(f"no mail yet in {maildir}")
    for message in messages:
        text = message.get_body(("plain",))
        links = LINK.findall(text.get_content()) if text is not None else []
        print(f"{message['Date']}  to {message['To']}\n  {message['Subject']}")
        for link in links:
            print(f"  {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
