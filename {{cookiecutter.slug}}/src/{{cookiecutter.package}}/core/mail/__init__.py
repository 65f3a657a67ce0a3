"""Mail, a backing service (factor IV) reached through SMTP_URL alone.

Nothing is mailed inside a request. The change that calls for a mail writes an outbox row in its
own transaction (outbox.py); the request enqueues it once committed, the worker sends it
(jobs/mail.py), and the clock's sweep enqueues whatever a request could not.
"""
