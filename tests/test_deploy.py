"""The generated project's deployment files, for every option: each passes its validator
(hadolint, the compose spec, Kubernetes' schemas, the CI schemas), and they agree with each other
and with the application: commands, ports, secrets, and grace periods long enough for the
shutdowns the processes perform. Also: cruft can create a project and sees it up to date."""

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from .conftest import BIN, TEMPLATE, render

# A name other than the default, so a slug or package written out by hand in a file shows up.
NAME = {"project_name": "Billing Service"}
SLUG, PACKAGE = "billing-service", "billing_service"
VARIANTS = list(product(("yes", "no"), ("github", "gitlab", "none")))
PROCESS_TYPES = ("web", "worker", "clock", "release")
TMP = "/tmp"  # noqa: S108  # the one writable path the pods mount
DEPLOYMENT_FILES = (
    "Dockerfile",
    ".dockerignore",
    "docker-compose.yml",
    "k8s",
    ".github",
    ".gitlab-ci.yml",
    ".pre-commit-config.yaml",
)
LEFTOVER = re.compile(r"\{\{-?\s*cookiecutter|\{%-?\s|\{#")


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)}\n{result.stdout}\n{result.stderr}"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def seconds(duration: str) -> float:
    """A compose duration ("30s", "1m30s", "270s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def documented_defaults(project: Path) -> dict[str, str]:
    """Every variable `.env.example` lists (commented out or not) with the value it shows."""
    pairs = re.findall(
        r"^#?\s*([A-Z][A-Z0-9_]*)=(\S*)", (project / ".env.example").read_text(), flags=re.MULTILINE
    )
    return dict(pairs)


def procfile(project: Path) -> dict[str, list[str]]:
    lines = (project / "Procfile").read_text().splitlines()
    commands = dict(line.split(":", 1) for line in lines if line.strip())
    # Procfile lines are `exec python -m ...`; images run the same command without a shell.
    return {name.strip(): command.split()[1:] for name, command in commands.items()}


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("deploy")
    return {
        (k8s, ci): render(out / f"{k8s}-{ci}", kubernetes=k8s, ci=ci, **NAME)
        for k8s, ci in VARIANTS
    }


@pytest.fixture(scope="module")
def project(projects: dict[tuple[str, str], Path]) -> Path:
    """The variant with every optional file: Kubernetes and GitHub Actions."""
    return projects[("yes", "github")]


# --- which files each option leaves ----------------------------------------------------------


@pytest.mark.parametrize(("k8s", "ci"), VARIANTS)
def test_each_option_keeps_its_files_and_drops_the_others(
    projects: dict[tuple[str, str], Path], k8s: str, ci: str
) -> None:
    project = projects[(k8s, ci)]
    for name in ("Dockerfile", ".dockerignore", "docker-compose.yml", ".pre-commit-config.yaml"):
        assert (project / name).is_file(), name
    assert (project / "k8s" / "kustomization.yaml").is_file() == (k8s == "yes")
    assert (project / "k8s").exists() == (k8s == "yes")
    assert (project / ".github" / "workflows" / "ci.yml").is_file() == (ci == "github")
    assert (project / ".github").exists() == (ci == "github")
    assert (project / ".gitlab-ci.yml").is_file() == (ci == "gitlab")
    assert not (project / ".cruft.json").exists()  # only cruft writes it


@pytest.mark.parametrize(("k8s", "ci"), VARIANTS)
def test_no_template_syntax_or_default_name_is_left(
    projects: dict[tuple[str, str], Path], k8s: str, ci: str
) -> None:
    project = projects[(k8s, ci)]
    deployment = [project / name for name in DEPLOYMENT_FILES]
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            where = path.relative_to(project)
            assert not LEFTOVER.search(text), f"{where}: template syntax left"
            if any(path == d or d in path.parents for d in deployment):
                assert "acme" not in text.lower(), f"{where}: the default name is written out"


# --- the image ---------------------------------------------------------------------------------


def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    stages: list[list[tuple[str, str]]] = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


def test_dockerfile_passes_hadolint(project: Path) -> None:
    assert_ok(run(BIN / "hadolint", project / "Dockerfile"))


def test_image_runs_unprivileged_in_exec_form_with_nothing_but_the_venv(project: Path) -> None:
    stages = dockerfile_stages(project / "Dockerfile")
    assert len(stages) >= 2, "multi-stage: build tools and sources stay out of the final image"
    final = stages[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert user.isdigit(), "a numeric USER lets Kubernetes' runAsNonRoot verify it"

    starts = {keyword: args for keyword, args in final if keyword in ("CMD", "ENTRYPOINT")}
    assert starts, "the final stage has a CMD or ENTRYPOINT"
    for keyword, args in starts.items():
        parsed = json.loads(args)  # exec form is a JSON array; shell form would not parse
        assert isinstance(parsed, list), keyword
    assert json.loads(starts["CMD"]) == procfile(project)["web"]

    copies = [args for keyword, args in final if keyword in ("COPY", "ADD")]
    assert copies
    for args in copies:
        assert args.startswith("--from="), f"final stage copies from the build context: {args}"
    for keyword, args in final:
        assert not re.search(r"SECRET|PASSWORD|TOKEN", args) or keyword == "LABEL", args
        assert not re.search(r"\b(gcc|build-essential|apt-get install)\b", args), args
    exposed = [args for keyword, args in final if keyword == "EXPOSE"]
    assert exposed == [documented_defaults(project)["PORT"]]


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include?, regex) per line, with Docker's matching: `*` within a path segment, `**` any
    number of segments, a match on a directory covers everything beneath it, last match wins."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1].replace("[!", "[^"), end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex + r"(?:/.*)?\Z")))
    return rules


def sent_to_builder(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    sent = True
    for negate, regex in rules:
        if regex.match(relative):
            sent = negate
    return sent


def test_build_context_holds_only_what_the_image_needs(project: Path) -> None:
    rules = dockerignore_rules(project / ".dockerignore")
    # What a working copy holds besides the rendered files.
    extras = [
        ".venv/bin/python",
        ".git/config",
        ".pytest_cache/v/cache",
        ".mypy_cache/x.json",
        ".ruff_cache/x",
        f"src/{PACKAGE}/__pycache__/web.cpython-311.pyc",
        "tests/__pycache__/conftest.cpython-311.pyc",
        ".env.production",
        "secrets.env",
    ]
    paths = [p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()]
    sent = {path for path in paths + extras if sent_to_builder(path, rules)}
    for path in sent:
        assert path in ("pyproject.toml", "requirements.lock") or (
            path.startswith("src/") and "__pycache__" not in path
        ), f"{path} would be sent to the builder"
    assert f"src/{PACKAGE}/__main__.py" in sent
    assert not any(sent_to_builder(path, rules) for path in (".env", ".git/HEAD", ".venv/x"))

    # Everything the Dockerfile copies from the context is in it.
    for stage in dockerfile_stages(project / "Dockerfile"):
        for keyword, args in stage:
            if keyword in ("COPY", "ADD") and not args.startswith("--from="):
                for source in args.split()[:-1]:
                    assert (project / source).exists(), source
                    assert sent_to_builder(source, rules), f"COPY {source}: not in the context"


# --- docker compose ----------------------------------------------------------------------------


def test_compose_files_follow_the_compose_spec(project: Path) -> None:
    result = run(
        BIN / "check-jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        project / "docker-compose.yml",
        TEMPLATE / "docker-compose.yml",
    )
    assert_ok(result)


def test_compose_releases_first_then_runs_each_process_with_its_grace(project: Path) -> None:
    services = load(project / "docker-compose.yml")["services"]
    defaults = documented_defaults(project)
    commands = procfile(project)
    assert set(services) >= {"postgres", "redis", *PROCESS_TYPES}

    for name in PROCESS_TYPES:
        service = services[name]
        assert service["command"] == commands[name], name
        # Secrets as files (compose's `secrets:`), never in the environment.
        environment = service["environment"]
        assert not {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MFA_ENCRYPTION_KEY"} & set(
            environment
        ), name
        assert "env_file" not in service, name  # .env holds make run's secrets
        assert set(service["secrets"]) == {
            "database_url",
            "redis_url",
            "secret_key",
            "mfa_encryption_key",
        }, name
        for secret in service["secrets"]:
            assert environment[f"{secret.upper()}_FILE"] == f"/run/secrets/{secret}", name
        assert service["read_only"] is True
        assert service["restart"] in ("no", "always", "on-failure", "unless-stopped"), name
    files = {
        name: (project / secret["file"]).read_text().strip()
        for name, secret in load(project / "docker-compose.yml")["secrets"].items()
    }
    assert urlsplit(files["database_url"]).hostname == "postgres"
    assert urlsplit(files["redis_url"]).hostname == "redis"
    env = dict(line.split("=", 1) for line in (project / ".env").read_text().splitlines())
    assert files["secret_key"] == env["SECRET_KEY"]
    assert files["mfa_encryption_key"] == env["MFA_ENCRYPTION_KEY"] != env["SECRET_KEY"]
    assert ".secrets/" in (project / ".gitignore").read_text().splitlines()
    assert services["release"]["restart"] == "no"
    assert services["release"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "clock"):
        depends = services[name]["depends_on"]
        assert depends["release"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name

    for name in ("postgres", "redis", "web"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    web = services["web"]
    port = web["environment"]["PORT"]
    probe = " ".join(web["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in probe
    assert any(str(mapping).endswith(f":{port}") for mapping in web["ports"])
    assert "noeviction" in services["redis"]["command"]

    # SIGTERM to SIGKILL: the web drain plus closing its pools; the longest task.
    drain = int(defaults["SHUTDOWN_GRACE_SECONDS"]) + float(defaults["DB_TIMEOUT_SECONDS"])
    assert seconds(web["stop_grace_period"]) > drain
    assert seconds(services["worker"]["stop_grace_period"]) > int(
        defaults["TASK_TIME_LIMIT_SECONDS"]
    )
    assert "stop_grace_period" in services["clock"]


def test_root_compose_serves_the_template_tests() -> None:
    services = load(TEMPLATE / "docker-compose.yml")["services"]
    postgres, redis = services["postgres"], services["redis"]
    # tests/test_generated.py's defaults: postgresql://postgres@127.0.0.1:5432/postgres, no
    # password, and redis://127.0.0.1:6379.
    assert postgres["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert any(str(mapping).endswith(":5432") for mapping in postgres["ports"])
    assert any(str(mapping).endswith(":6379") for mapping in redis["ports"])
    assert "noeviction" in redis["command"]
    assert "healthcheck" in postgres
    assert "healthcheck" in redis


# --- Kubernetes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s(project: Path) -> Path:
    return project / "k8s"


@pytest.fixture(scope="module")
def kustomization(k8s: Path) -> dict[str, Any]:
    data: dict[str, Any] = load(k8s / "kustomization.yaml")
    return data


@pytest.fixture(scope="module")
def objects(k8s: Path, kustomization: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object, from every resource file the kustomization lists."""
    found = {}
    for resource in kustomization["resources"]:
        for obj in load_all(k8s / resource):
            found[(obj["kind"], obj["metadata"]["name"])] = obj
    return found


@pytest.fixture(scope="module")
def config(project: Path, kustomization: dict[str, Any]) -> dict[str, str]:
    """The environment the pods get: the ConfigMap's literals over the documented defaults."""
    values = documented_defaults(project)
    for generator in kustomization["configMapGenerator"]:
        values.update(literal.split("=", 1) for literal in generator["literals"])
    return values


def pod_specs(objects: dict[tuple[str, str], dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    for (kind, name), obj in objects.items():
        if kind in ("Deployment", "Job"):
            yield name, obj["spec"]["template"]


def test_every_manifest_passes_strict_validation(k8s: Path, kustomization: dict[str, Any]) -> None:
    listed = set(kustomization["resources"])
    present = {p.name for p in k8s.glob("*.y*ml")} - {"kustomization.yaml"}
    assert listed == present, "every manifest is listed in kustomization.yaml, and only those"
    assert_ok(run(BIN / "kubernetes-validate", "--strict", *sorted(listed), cwd=k8s))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not found")
def test_kustomize_build_passes_strict_validation(k8s: Path, tmp_path: Path) -> None:
    built = run("kubectl", "kustomize", k8s)
    assert_ok(built)
    (tmp_path / "built.yaml").write_text(built.stdout)
    assert_ok(run(BIN / "kubernetes-validate", "--strict", tmp_path / "built.yaml"))
    kinds = [doc["kind"] for doc in yaml.safe_load_all(built.stdout)]
    assert {"ConfigMap", "Secret"} <= set(kinds)


COMPONENT = "app.kubernetes.io/component"
RELEASE_STAGE = "app.kubernetes.io/component in (config,release)"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not found")
def test_a_deploy_applies_the_migration_job_before_anything_that_rolls(k8s: Path) -> None:
    """The first apply of a deploy (kustomization.yaml's comment) selects the release Job and
    the config it reads, and nothing that would roll before the Job completes."""
    text = (k8s / "kustomization.yaml").read_text()
    assert f"-l '{RELEASE_STAGE}'" in text
    assert f"kubectl wait --for=condition=complete job/{SLUG}-release" in text
    built = run("kubectl", "kustomize", k8s)
    assert_ok(built)
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    wanted = {"config", "release"}
    first = [d for d in docs if d["metadata"].get("labels", {}).get(COMPONENT) in wanted]
    assert sorted(d["kind"] for d in first) == ["ConfigMap", "Job", "Secret"]
    (job,) = (d for d in first if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    read = {ref["name"] for source in pod["containers"][0]["envFrom"] for ref in source.values()}
    for volume in pod.get("volumes", []):  # the Secret, mounted as files
        for source in volume.get("projected", {}).get("sources", []):
            read |= {ref["name"] for ref in source.values() if "name" in ref}
    assert read == {d["metadata"]["name"] for d in first if d["kind"] != "Job"}


def test_every_process_type_runs_as_the_procfile_says(
    project: Path, objects: dict[tuple[str, str], dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    commands = procfile(project)
    image_names = {image["name"] for image in kustomization["images"]}
    kinds = {"web": "Deployment", "worker": "Deployment", "clock": "Deployment", "release": "Job"}
    for process, kind in kinds.items():
        obj = objects[(kind, f"{SLUG}-{process}")]
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        assert container["command"] == commands[process], process
        assert container["image"] in image_names, "kustomize sets the image in one place"
    assert objects[("Deployment", f"{SLUG}-clock")]["spec"]["replicas"] == 2
    assert objects[("Job", f"{SLUG}-release")]["spec"]["template"]["spec"]["restartPolicy"] == (
        "Never"
    )


def test_objects_select_and_reference_what_exists(
    objects: dict[tuple[str, str], dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    deployments = {name: obj for (kind, name), obj in objects.items() if kind == "Deployment"}
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name

    def selected(selector: dict[str, str]) -> list[str]:
        return [
            name
            for name, deployment in deployments.items()
            if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        ]

    service = objects[("Service", f"{SLUG}-web")]
    assert selected(service["spec"]["selector"]) == [f"{SLUG}-web"]
    (web,) = deployments[f"{SLUG}-web"]["spec"]["template"]["spec"]["containers"]
    port_names = {port["name"] for port in web["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names

    autoscaled = {
        obj["spec"]["scaleTargetRef"]["name"]
        for (kind, _), obj in objects.items()
        if kind == "HorizontalPodAutoscaler"
    }
    assert autoscaled == {f"{SLUG}-web", f"{SLUG}-worker"}
    for name in autoscaled:
        assert "replicas" not in deployments[name]["spec"], f"{name}: the autoscaler owns it"
    budgets = [
        selected(obj["spec"]["selector"]["matchLabels"])
        for (kind, _), obj in objects.items()
        if kind == "PodDisruptionBudget"
    ]
    assert sorted(budgets) == [[f"{SLUG}-{p}"] for p in ("clock", "web", "worker")]

    configs = {generator["name"] for generator in kustomization["configMapGenerator"]}
    (secret,) = kustomization["secretGenerator"]
    # The secrets reach the processes as files (a projected volume), never as variables: each
    # key is a file in the mount, named by the config map's NAME_FILE for it.
    (config,) = kustomization["configMapGenerator"]
    files = dict(literal.split("=", 1) for literal in config["literals"])
    keys = {literal.split("=", 1)[0] for literal in secret["literals"]}
    for name, template in pod_specs(objects):
        volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
        for container in template["spec"]["containers"]:
            refs = container["envFrom"]
            assert {ref["configMapRef"]["name"] for ref in refs if "configMapRef" in ref} <= configs
            assert not [ref for ref in refs if "secretRef" in ref], name
            assert not [v for v in container.get("env", []) if "secretKeyRef" in str(v)], name
            mounts = [
                (mount["mountPath"], volumes[mount["name"]]["projected"]["sources"])
                for mount in container["volumeMounts"]
                if "projected" in volumes[mount["name"]]
            ]
            ((path, sources),) = mounts
            assert [source["secret"]["name"] for source in sources] == [secret["name"]], name
            for key in keys:
                assert files[f"{key}_FILE"] == f"{path}/{key}", (name, key)
    # No content hash in its name: a changed Secret reaches the running pods' files in place.
    assert secret["options"]["disableNameSuffixHash"] is True


def test_secret_holds_placeholders_that_the_app_refuses(kustomization: dict[str, Any]) -> None:
    (generator,) = kustomization["secretGenerator"]
    values = dict(literal.split("=", 1) for literal in generator["literals"])
    assert set(values) == {
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "SMTP_URL",
        "MFA_ENCRYPTION_KEY",
        "MFA_ENCRYPTION_KEY_FALLBACKS",
    }
    assert values.pop("SECRET_KEY_FALLBACKS") == ""  # none yet: the file exists, empty
    assert values.pop("MFA_ENCRYPTION_KEY_FALLBACKS") == ""
    for name, value in values.items():
        assert "CHANGE" in value.upper(), f"{name} must be an obvious placeholder"
    for key in ("SECRET_KEY", "MFA_ENCRYPTION_KEY"):
        assert len(values[key]) < 32, "a placeholder key must fail validation, not be used"


def test_pods_are_locked_down(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    for name, template in pod_specs(objects):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys(), (name, kind)
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == TMP]
            assert "emptyDir" in volumes[tmp["name"]], name


def test_web_probes_check_the_right_endpoints(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    (web,) = objects[("Deployment", f"{SLUG}-web")]["spec"]["template"]["spec"]["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert web["startupProbe"]["httpGet"]["path"] == "/livez"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"PORT": str(web["ports"][0]["containerPort"])}.items() <= {
        env["name"]: env["value"] for env in web["env"]
    }.items()
    # The worker's liveness is a TCP check of its metrics port, never a broker round trip; the
    # clock has no port and no probe (see the comments in their manifests).
    spec = objects[("Deployment", f"{SLUG}-worker")]["spec"]["template"]
    (worker,) = spec["spec"]["containers"]
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9101}]
    assert worker["livenessProbe"]["tcpSocket"]["port"] == "metrics"
    assert spec["metadata"]["annotations"]["prometheus.io/port"] == "9101"
    (clock,) = objects[("Deployment", f"{SLUG}-clock")]["spec"]["template"]["spec"]["containers"]
    assert "ports" not in clock
    assert "livenessProbe" not in clock


def pre_stop_seconds(container: dict[str, Any]) -> float:
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    if "exec" in pre_stop:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep", command
        return float(command[1])
    return 0.0


def test_grace_periods_cover_each_shutdown(
    objects: dict[tuple[str, str], dict[str, Any]], config: dict[str, str]
) -> None:
    web = objects[("Deployment", f"{SLUG}-web")]["spec"]["template"]["spec"]
    (container,) = web["containers"]
    pre_stop = pre_stop_seconds(container)
    assert pre_stop >= 3, "a few seconds for endpoints to drop the pod before SIGTERM"
    # The grace period runs from the start of preStop; after the drain, the pools close.
    needed = pre_stop + int(config["SHUTDOWN_GRACE_SECONDS"]) + float(config["DB_TIMEOUT_SECONDS"])
    assert web["terminationGracePeriodSeconds"] > needed
    if "REQUEST_TIMEOUT_SECONDS" in config:  # the drain outlasts any request the app still serves
        assert float(config["REQUEST_TIMEOUT_SECONDS"]) <= int(config["SHUTDOWN_GRACE_SECONDS"])

    worker = objects[("Deployment", f"{SLUG}-worker")]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > int(config["TASK_TIME_LIMIT_SECONDS"])
    assert int(config["TASK_TIME_LIMIT_SECONDS"]) < int(config["BROKER_VISIBILITY_TIMEOUT_SECONDS"])


# --- CI and pre-commit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ci", "path", "schema"),
    [
        ("github", ".github/workflows/ci.yml", "vendor.github-workflows"),
        ("gitlab", ".gitlab-ci.yml", "vendor.gitlab-ci"),
    ],
)
def test_ci_file_follows_its_schema_and_runs_the_make_targets(
    projects: dict[tuple[str, str], Path], ci: str, path: str, schema: str
) -> None:
    project = projects[("yes", ci)]
    assert_ok(run(BIN / "check-jsonschema", "--builtin-schema", schema, project / path))
    text = (project / path).read_text()
    for needed in (
        "make install",
        "make lint",
        "make test",
        "TEST_DATABASE_URL",
        "TEST_REDIS_URL",
        "postgres:",
        "redis:",
        "3.11",
        "docker build",
    ):
        assert needed in text, f"{path}: {needed!r} missing"
    uv = re.search(r"^uv==(\S+)", (TEMPLATE / "requirements-dev.lock").read_text(), re.MULTILINE)
    assert uv
    assert f"uv=={uv[1]}" in text, "CI installs the uv the template is tested with"
    if ci == "github":
        assert "${{ github." in text, "GitHub expressions must survive rendering ({% raw %})"


def test_pre_commit_pins_the_locked_ruff(project: Path) -> None:
    config = load(project / ".pre-commit-config.yaml")
    (repo,) = [r for r in config["repos"] if r["repo"].endswith("/ruff-pre-commit")]
    locked = re.search(
        r"^ruff==(\S+)", (project / "requirements-dev.lock").read_text(), re.MULTILINE
    )
    assert locked
    assert repo["rev"] == f"v{locked[1]}"
    assert {"ruff-check", "ruff-format"} <= {hook["id"] for hook in repo["hooks"]}


# --- cruft -------------------------------------------------------------------------------------


def test_cruft_creates_a_project_it_then_finds_up_to_date(tmp_path: Path) -> None:
    # cruft needs the template as a git repository; commit a copy of the working tree as it is.
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE,
        template,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"
        ),
    )
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "commit.gpgsign=false", "commit", "-q", "-m", "template"],
    ):
        assert_ok(
            subprocess.run(
                ["git", *args], cwd=template, env=env, capture_output=True, text=True, timeout=60
            )
        )

    out = tmp_path / "out"
    out.mkdir()
    assert_ok(run(BIN / "cruft", "create", "--no-input", template, "--output-dir", out))
    project = out / "acme-notes"
    link = json.loads((project / ".cruft.json").read_text())
    assert link["template"] == str(template)
    assert link["context"]["cookiecutter"]["package"] == "acme_notes"
    assert_ok(run(BIN / "cruft", "check", cwd=project))
