"""The deployment files: the Dockerfile, deploy/compose.yaml and deploy/k8s/.

No image can be pulled or built here, so each file is proved by what can run: the
Dockerfile's own install commands (parsed from it) in a fresh virtual environment, its
health check against a server, the compose file through `docker compose config` (or
Debian's docker-compose) and the Compose schema, its entrypoint scripts under /bin/sh
with a stand-in `sapphire`, and the Kubernetes manifests against their schemas
(kubernetes-validate, offline) plus the rules every container must follow.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose_spec.json"
IN_CI = os.environ.get("CI") == "true"
COMPILERS = ("build-essential", "gcc", "g++", "clang", "make", "cc ")


# ---------------------------------------------------------------- the Dockerfile
@dataclass
class Instruction:
    """One Dockerfile instruction: its keyword and the rest of its line(s)."""

    keyword: str
    value: str


@dataclass
class Stage:
    """One FROM ... stage and its instructions."""

    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.value for i in self.instructions if i.keyword == keyword]


def _instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, value = full.partition(" ")
        out.append(Instruction(keyword.upper(), value.strip()))
    assert not pending, f"the Dockerfile ends inside a continued line: {pending!r}"
    return out


def _args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults (the later ones win), quotes removed."""
    found: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.value:
            name, _, default = ins.value.partition("=")
            found[name] = shlex.split(default)[0] if default else ""
        elif ins.keyword == "ARG":
            found.setdefault(ins.value, "")
    return found


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text)


def _stages() -> tuple[list[Stage], dict[str, str]]:
    instructions = _instructions(DOCKERFILE.read_text())
    args = _args(instructions)
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            parts = ins.value.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(_expand(parts[0], args), name, []))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages, args


def _exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed), value
    return parsed


def _healthcheck_argv() -> list[str]:
    stages, _ = _stages()
    (check,) = stages[-1].all("HEALTHCHECK")
    cmd = check[check.index("CMD ") + 4 :].strip()
    return _exec_form(cmd)


def test_dockerfile_builds_in_one_stage_and_runs_from_a_slim_one() -> None:
    stages, _ = _stages()
    assert len(stages) >= 2, "a multi-stage build: a builder and the final image"
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base
    assert any("pip wheel" in run for run in builder.all("RUN"))
    assert any("build-essential" in run for run in builder.all("RUN"))
    for run in final.all("RUN"):
        if "apt-get install" in run:
            assert not any(c in run for c in COMPILERS), f"a compiler in the final image: {run}"
    install = [run for run in final.all("RUN") if "pip install" in run]
    assert len(install) == 1, install
    # from the builder's wheels only: no index, no source tree, nothing left behind
    assert "--no-index" in install[0] and "from=builder" in install[0]
    assert not final.all("COPY"), "the final image copies nothing from the context"


def test_dockerfile_runs_as_a_user_with_its_data_in_a_volume() -> None:
    stages, _ = _stages()
    final = stages[-1]
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a numeric non-root id"
    assert any(f"--uid {uid}" in run for run in final.all("RUN")), "the user is created"
    env = " ".join(final.all("ENV"))
    assert re.search(r"\bSAPPHIRE_HOME=/data\b", env), env
    assert _exec_form(final.all("VOLUME")[0]) == ["/data"]
    assert any(f"-o {uid}" in run and "/data" in run for run in final.all("RUN"))


def test_dockerfile_entrypoint_and_default_command() -> None:
    final = _stages()[0][-1]
    assert _exec_form(final.all("ENTRYPOINT")[0]) == ["sapphire"]
    assert _exec_form(final.all("CMD")[0]) == ["serve", "--host", "0.0.0.0"]
    argv = _healthcheck_argv()
    assert argv[:2] == ["python", "-c"] and "urllib" in argv[2], argv
    assert "/api/v1/health" in argv[2] and "curl" not in argv[2]


def test_dockerignore_keeps_what_the_build_copies_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/"))
            for pat in patterns
            for p in prefixes + list(parts)
        )

    stages, _ = _stages()
    copied = [
        src
        for stage in stages
        for value in stage.all("COPY")
        if "--from" not in value
        for src in value.split()[:-1]
    ]
    assert copied, "the builder copies the sources"
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert not ignored(src), f"{src} is copied but .dockerignore drops it"
    assert not ignored("src/sapphire/store/migrations/env.py")
    for local in (".git", ".venv", "deploy/secrets/api_secret", "tests", "x/__pycache__"):
        assert ignored(local), f"{local} would reach the build context"


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/api/v1/health" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_healthcheck(python: str, port: int) -> subprocess.CompletedProcess[str]:
    argv = _healthcheck_argv()
    env = {**os.environ, "SAPPHIRE_PORT": str(port)}
    return subprocess.run([python, *argv[1:]], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_passes_only_on_a_healthy_answer(status: int, healthy: bool) -> None:
    handler = type("Handler", (_Handler,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = _run_healthcheck(sys.executable, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


def test_healthcheck_fails_when_nothing_answers() -> None:
    assert _run_healthcheck(sys.executable, _free_port()).returncode != 0


def _pip_command(run: str, python: Path, wheels: Path, args: dict[str, str]) -> list[str]:
    """A Dockerfile RUN line's pip command, for `python` (its --mount flags dropped, the
    wheel folder moved to `wheels`, `--no-deps` added: the dependencies come from the
    project's environment, see the test below)."""
    words = [w for w in shlex.split(_expand(run, args)) if not w.startswith("--mount=")]
    assert words[:3] == ["python", "-m", "pip"], f"not a pip command: {run}"
    words = [str(wheels) if w == "/wheels" else w for w in words]
    return [str(python), *words[1:4], "--no-deps", *words[4:]]


@pytest.mark.slow
def test_dockerfile_install_steps_in_a_fresh_venv(tmp_path: Path) -> None:
    """The builder's `pip wheel` and the final stage's `pip install`, parsed from the
    Dockerfile, run in a fresh venv on a context holding only what the Dockerfile copies;
    then the installed `sapphire` (ENTRYPOINT + CMD) serves, and the HEALTHCHECK passes.

    With every dependency the two steps take ~100 s here (253 MB of wheels), so they run
    with `--no-deps`: the wheel is built by this environment's setuptools (no build
    isolation, so nothing is fetched: `docker build` fetches it), installed alone in the
    fresh venv, and the dependencies are taken from this test's environment through a
    .pth line placed after the venv's own packages."""
    stages, args = _stages()
    builder, final = stages[0], stages[-1]
    context = tmp_path / "context"
    context.mkdir()
    for value in builder.all("COPY"):
        *sources, _ = value.split()
        for src in sources:
            target = context / src
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / src, target)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    wheels = tmp_path / "wheels"
    (wheel_run,) = [r for r in builder.all("RUN") if "pip wheel" in r]
    (install_run,) = [r for r in final.all("RUN") if "pip install" in r]
    for run in (wheel_run, install_run):
        cmd = _pip_command(run, python, wheels, args)
        if run is wheel_run:  # offline: this environment's setuptools builds it
            cmd = [sys.executable, *cmd[1:4], "--no-build-isolation", *cmd[4:]]
        done = subprocess.run(cmd, cwd=context, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stdout}\n{done.stderr}"
    assert [w.name for w in wheels.glob("sapphire-*.whl")], "the builder made no wheel"

    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "zz_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [str(python), "-c", "import sapphire.api.app, sapphire; print(sapphire.__file__)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    port = _free_port()
    home = tmp_path / "data"
    env = {
        **os.environ,
        "SAPPHIRE_HOME": str(home),
        "SAPPHIRE_PORT": str(port),
        "SAPPHIRE_API_SECRET": "d3a1f0c9b8e7a6f5d4c3b2a1f0e9d8c7b6a5f4e3",
    }
    env.pop("SAPPHIRE_DATABASE_URL", None)
    env.pop("SAPPHIRE_REDIS_URL", None)
    entry = _exec_form(final.all("ENTRYPOINT")[0])
    command = _exec_form(final.all("CMD")[0])
    server = subprocess.Popen(
        [str(venv / "bin" / entry[0]), *entry[1:], *command],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and server.poll() is None:
            if _run_healthcheck(str(python), port).returncode == 0:
                break
            time.sleep(0.5)
        assert server.poll() is None, f"sapphire serve stopped:\n{server.communicate()[0]}"
        assert _run_healthcheck(str(python), port).returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/ready", timeout=10) as r:
            assert json.load(r)["ready"] is True  # migrations ran at start
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (home / "sapphire.db").exists()
    assert _run_healthcheck(str(python), port).returncode != 0


# ---------------------------------------------------------------- compose
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _compose_tool() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_config_accepts_the_file() -> None:
    tool = _compose_tool()
    if tool is None:
        if IN_CI:
            pytest.fail("no docker compose / docker-compose: .ci/run installs docker-compose")
        pytest.skip("needs `docker compose` or Debian's docker-compose")
    done = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SAPPHIRE_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == {
        "api", "paper", "postgres", "redis", "prometheus", "grafana"
    }  # fmt: skip
    assert resolved["services"]["api"]["image"] == "sapphire:0.1.0"


def test_compose_file_matches_the_compose_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # the file says draft 2019-09 by a URL jsonschema does not know ('draft/2019-09/schema#')
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    broken = {"services": {"api": {"image": "x", "restart": "now", "bogus": 1}}}
    assert list(validator.iter_errors(broken)), "the schema refuses an unknown key"


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)", re.IGNORECASE)


def test_compose_has_no_literal_secrets_and_every_service_is_checked() -> None:
    data = _compose()
    services = data["services"]
    for name, service in services.items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert key.endswith("FILE"), f"{name}: {key} holds a secret literally"
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}={value}"
        assert "healthcheck" in service and not service["healthcheck"].get("disable")
        assert service.get("restart") in {"unless-stopped", "on-failure", "always"}, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in data["volumes"], f"{name}: {source} is not a named volume"
        for secret in service.get("secrets", []):
            assert data["secrets"][secret]["file"].startswith("./secrets/"), secret
        for published in service.get("ports", []):
            assert str(published).startswith("127.0.0.1:"), f"{name} publishes {published}"
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]
    api_env = services["api"]["environment"]
    assert api_env["SAPPHIRE_API_SECRET_FILE"] == "/run/secrets/api_secret"
    assert api_env["SAPPHIRE_MASTER_KEY_FILE"] == "/run/secrets/master_key"
    assert "@" in api_env["SAPPHIRE_DATABASE_URL"]
    assert ":" not in api_env["SAPPHIRE_DATABASE_URL"].split("//")[1].split("@")[0]
    mounts = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])]
    for ours in ("./prometheus/prometheus.yml", "./prometheus/alerts.yml"):
        assert ours in mounts
    assert "./grafana/provisioning" in mounts and "./grafana/dashboards" in mounts
    assert services["paper"]["restart"] == "on-failure"


def _shell_entrypoint(service: str) -> list[str]:
    entry = _compose()["services"][service]["entrypoint"]
    assert entry[:2] == ["/bin/sh", "-c"], entry
    script = entry[2]
    assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", "")), "unescaped $"
    return ["/bin/sh", "-c", script.replace("$$", "$"), *entry[3:]]


@pytest.fixture
def fake_sapphire(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A `sapphire` on PATH that records its arguments and PGPASSWORD; `runs show` exits
    with $FAKE_RUN_EXISTS (1: no such run)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "sapphire"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$* | $PGPASSWORD" >> {log}\n'
        'if [ "$1" = runs ]; then exit "${FAKE_RUN_EXISTS:-1}"; fi\n'
    )
    fake.chmod(0o755)
    password = tmp_path / "postgres_password"
    password.write_text("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "POSTGRES_PASSWORD_FILE": str(password),
        "PAPER_RUN_ID": "paper-main",
    }
    yield log, env


def test_compose_api_entrypoint_passes_the_password_by_file(
    fake_sapphire: tuple[Path, dict[str, str]],
) -> None:
    log, env = fake_sapphire
    command = _compose()["services"]["api"]["command"]
    done = subprocess.run([*_shell_entrypoint("api"), *command], env=env, timeout=30)
    assert done.returncode == 0
    assert log.read_text() == "serve --host 0.0.0.0 | 0f1e2d3c4b5a69788796a5b4c3d2e1f0\n"
    log.unlink()
    env["POSTGRES_PASSWORD_FILE"] = "/nonexistent/postgres_password"
    done = subprocess.run(
        [*_shell_entrypoint("api"), *command], env=env, capture_output=True, timeout=30
    )
    assert done.returncode != 0 and not log.exists(), "started without the password"


@pytest.mark.parametrize("exists", [False, True])
def test_compose_paper_entrypoint_starts_then_resumes_its_run(
    fake_sapphire: tuple[Path, dict[str, str]], exists: bool
) -> None:
    log, env = fake_sapphire
    env["FAKE_RUN_EXISTS"] = "0" if exists else "1"
    command = _compose()["services"]["paper"]["command"]
    done = subprocess.run([*_shell_entrypoint("paper"), *command], env=env, timeout=30)
    assert done.returncode == 0
    show, run = log.read_text().splitlines()
    assert show.startswith("runs show paper-main |")
    if exists:
        assert run.startswith("paper resume paper-main --no-live |")
    else:
        expected = "paper --run-id paper-main --no-live " + " ".join(command)
        assert run.startswith(expected + " |"), run


def test_secrets_script_makes_random_private_files_and_keeps_them(tmp_path: Path) -> None:
    script = tmp_path / "secrets.sh"
    shutil.copy2(ROOT / "deploy" / "secrets.sh", script)
    subprocess.run(["/bin/sh", str(script)], check=True, capture_output=True, timeout=30)
    folder = tmp_path / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    declared = {name for name in _compose()["secrets"]}
    made = {p.name: p.read_text() for p in folder.iterdir()}
    assert set(made) == declared
    for name, value in made.items():
        assert re.fullmatch(r"[0-9a-f]{64}", value), f"{name}: {value!r}"
    assert len(set(made.values())) == len(made)
    subprocess.run(["/bin/sh", str(script)], check=True, capture_output=True, timeout=30)
    assert {p.name: p.read_text() for p in folder.iterdir()} == made, "a rerun changed one"


# ---------------------------------------------------------------- Kubernetes
def _resources() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def test_k8s_manifests_match_their_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    resources = _resources()
    kinds = {doc["kind"] for _, doc in resources}
    assert {
        "Namespace", "ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy",
        "PersistentVolumeClaim",
    } <= kinds  # fmt: skip
    for path, doc in resources:
        kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"].get("namespace", "sapphire") == "sapphire", path
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


def _deployments() -> list[dict[str, Any]]:
    return [doc for _, doc in _resources() if doc["kind"] == "Deployment"]


def test_k8s_every_container_is_limited_probed_and_locked_down() -> None:
    deployments = _deployments()
    assert {d["metadata"]["name"] for d in deployments} == {"sapphire-api", "sapphire-paper"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            limits = container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits), where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "livenessProbe" in container and "readinessProbe" in container, where
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            for env in container.get("env", []):
                assert "value" not in env or not SECRET_NAME.search(env["name"]), where


def test_k8s_service_probes_use_health_and_ready() -> None:
    (api,) = [d for d in _deployments() if d["metadata"]["name"] == "sapphire-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/ready"
    assert container["args"] == ["serve", "--host", "0.0.0.0"]


def test_node_probes_are_its_health_and_ready() -> None:
    """The paper node's probes are its own /health and /ready beside its metrics (k8s),
    and compose's health check command passes against a node whose loop turns and fails
    against one whose loop is stuck."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from sapphire.ops.node_health import NodeHealth, serve_node_http

    (paper,) = [d for d in _deployments() if d["metadata"]["name"] == "sapphire-paper"]
    (container,) = paper["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": 9108}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SAPPHIRE_NODE_METRICS_PORT"] == "9108"
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    compose = _compose()["services"]["paper"]
    assert compose["environment"]["SAPPHIRE_NODE_METRICS_PORT"] == "9108"
    argv = compose["healthcheck"]["test"][1:]
    session = SimpleNamespace(status="running", _status_at=time.monotonic(), run_id="p")
    server = serve_node_http(NodeHealth(session, lambda: None), CollectorRegistry(), 0)
    try:
        code = argv[2].replace(":9108/", f":{server.server_port}/")

        def probe() -> int:
            return subprocess.run([sys.executable, "-c", code], timeout=30).returncode

        assert probe() == 0
        session._status_at = time.monotonic() - 3600  # the loop stuck an hour
        assert probe() != 0
    finally:
        server.shutdown()


def test_k8s_secret_template_has_no_values_and_network_is_denied_by_default() -> None:
    resources = [doc for _, doc in _resources()]
    (secret,) = [d for d in resources if d["kind"] == "Secret"]
    assert "data" not in secret and set(secret["stringData"].values()) == {""}
    (config,) = [d for d in resources if d["kind"] == "ConfigMap"]
    for key, value in config["data"].items():
        assert not SECRET_NAME.search(key) or key.endswith("_FILE"), key
        assert ":" not in value.split("//")[-1].split("@")[0] or "@" not in value, key
    policies = [d for d in resources if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not any(k in deny[0]["spec"] for k in ("ingress", "egress"))
