"""A second factor beside the password (OWASP ASVS 5 V6.5, V6.6).

- `totp.py`: codes from an authenticator app (RFC 6238), each accepted once.
- `recovery.py`: ten single-use recovery codes, for when the app is lost.
- `secretbox.py`: the TOTP secret is kept encrypted, with keys that rotate.
- `factors.py`: the tables: enrolling, checking a code, turning it all off.
- `pending.py`: a login that gave its password and still owes its second factor.
"""
