"""Passkeys (WebAuthn Level 3): log in with one alone, or give one as the second factor.

The ceremonies are py_webauthn's (it parses and checks what the browser sends: the origin, the
RP ID's hash, the flags, the signature); this package decides what they are checked against
and keeps what they leave behind.

- `ceremony.py`: the options a browser is given, and the checks its answer must pass.
- `challenges.py`: each challenge in Redis, for one ceremony, once, for a short time.
- `store.py`: the credentials in PostgreSQL, and the signature counter that must only go up.
"""
