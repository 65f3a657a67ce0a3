"""Drop the files of options not chosen, write a local .env, and say what to do next."""

import secrets
import shutil
from pathlib import Path

PACKAGE = {{cookiecutter.package | jsonify}}
SLUG = {{cookiecutter.slug | jsonify}}
KUBERNETES = {{cookiecutter.kubernetes | jsonify}}
CI = {{cookiecutter.ci | jsonify}}

# Each option owns whole files; the unchosen ones are removed rather than templated away.
OPTION_FILES = {
    ("kubernetes", "no"): ["k8s"],
    ("ci", "github"): [".gitlab-ci.yml"],
    ("ci", "gitlab"): [".github"],
    ("ci", "none"): [".github", ".gitlab-ci.yml"],
}


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def main() -> None:
    root = Path.cwd()
    for option in (("kubernetes", KUBERNETES), ("ci", CI)):
        for name in OPTION_FILES.get(option, []):
            remove(root / name)

    # Local development only: git-ignored, read by `honcho start`, never by the application.
    secret_key = secrets.token_urlsafe(48)
    mfa_key = secrets.token_urlsafe(48)
    (root / ".env").write_text(
        f"DATABASE_URL=postgresql://postgres@127.0.0.1:5432/{PACKAGE}\n"
        "REDIS_URL=redis://127.0.0.1:6379/0\n"
        f"SECRET_KEY={secret_key}\n"
        f"MFA_ENCRYPTION_KEY={mfa_key}\n"
        "SESSION_COOKIE_SECURE=false\n"  # plain http://localhost
        "PORT=8000\n"  # honcho's base port; web, the first process `make run` starts, gets it
    )
    # The same for docker compose, as the secret files it mounts (git-ignored too): the
    # containers reach the backing services by their service names.
    (root / ".secrets").mkdir(mode=0o700)
    for name, value in (
        ("database-url", f"postgresql://postgres@postgres:5432/{PACKAGE}"),
        ("redis-url", "redis://redis:6379/0"),
        ("secret-key", secret_key),
        ("mfa-encryption-key", mfa_key),
    ):
        (root / ".secrets" / name).write_text(value + "\n")
    print(
        f"\nCreated {SLUG}/ with a local .env (fresh keys). Next:\n"
        f"  cd {SLUG}\n"
        "  make run     # installs; PostgreSQL and Redis (started if none answer); release; web,\n"
        "               # worker and clock from the Procfile. Ctrl-C stops everything.\n"
        "  make test\n"
    )


if __name__ == "__main__":
    main()
