"""The deployment files agree with each other and with Shoal's contracts.

Docker and Kubernetes do not run where the suite runs, so these tests read
`Dockerfile`, `compose.yaml`, `deploy/nginx/nginx.conf` and `deploy/k8s/` and
check what ties them together: service names, ports, probes, environment
variables, mounted files, grace periods. The nginx config is also checked by
the real nginx binary, and the Kubernetes manifests by kubernetes-validate
(offline, against the API schemas it bundles).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml

from shoal.cli.serve import HYPERCORN_DEFAULTS, ServeOptions, serve_config
from shoal.cli.supervisor import stop_seconds
from shoal.config import ENV_OVERRIDES, SlowClientSettings, StreamSettings, load_settings

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "k8s"

#: The variables Shoal reads (the configuration reference documents them all:
#: test_every_variable_shoal_reads_is_documented).
DOCUMENTED_ENV_VARS = frozenset({"SHOAL_CONFIG", "SHOAL_HYPERCORN_CONFIG", *ENV_OVERRIDES})
REQUIRED_API_ENV_VARS = frozenset(
    {"SHOAL_CONFIG", "SHOAL_MONGODB_URI", "SHOAL_REDIS_URL", "SHOAL_SECRET_KEY"}
)
NGINX_CONF_IN_CONTAINER = "/etc/nginx/nginx.conf"


# --- compose.yaml -------------------------------------------------------------


class Mount(NamedTuple):
    source: str
    read_only: bool


class Port(NamedTuple):
    published: str | None
    target: int


def load_compose() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(compose, dict), "compose.yaml is not a mapping"
    return compose


def service(name: str) -> dict[str, Any]:
    services = load_compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    svc = services[name]
    assert isinstance(svc, dict)
    return svc


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment, given either as a mapping or as a KEY=VALUE list."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def bind_mounts(svc: dict[str, Any]) -> dict[str, Mount]:
    """Host paths mounted into a service, by their path in the container."""
    mounts: dict[str, Mount] = {}
    for volume in svc.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = Mount(
                    volume["source"], bool(volume.get("read_only", False))
                )
            continue
        source, target, *options = volume.split(":")
        if source.startswith((".", "/")):  # otherwise it names a volume
            mounts[target] = Mount(source, "ro" in ",".join(options).split(","))
    return mounts


def published_ports(svc: dict[str, Any]) -> list[Port]:
    ports: list[Port] = []
    for entry in svc.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            ports.append(Port(None if published is None else str(published), int(entry["target"])))
            continue
        *host_parts, target = str(entry).split("/")[0].split(":")
        ports.append(Port(host_parts[-1] if host_parts else None, int(target)))
    return ports


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    """Services a service depends on, with the condition it waits for."""
    deps = svc.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def duration_seconds(text: str) -> float:
    """A compose duration such as `15s` or `1m30s`, in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    pattern = r"(\d+(?:\.\d+)?)(us|ms|s|m|h)"
    assert re.fullmatch(f"(?:{pattern})+", text), f"not a duration: {text!r}"
    parts = re.findall(pattern, text)
    return sum(float(number) * units[unit] for number, unit in parts)


def url_address(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


# --- Dockerfile ---------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    instructions: list[tuple[str, str]]

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def dockerfile_stages() -> list[Stage]:
    stages: list[Stage] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            match = re.search(r"\s+AS\s+(\S+)\s*$", args, flags=re.IGNORECASE)
            stages.append(Stage(match.group(1) if match else None, []))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    assert stages, "the Dockerfile has no FROM"
    return stages


def server_stage() -> Stage:
    """The last stage: what `build: .` (no target) produces."""
    return dockerfile_stages()[-1]


def exec_form(args: str) -> list[str]:
    """The argument list of a CMD/HEALTHCHECK in exec (JSON) form, else shell-split."""
    if args.startswith("["):
        parsed = json.loads(args)
        assert isinstance(parsed, list)
        return [str(item) for item in parsed]
    return shlex.split(args)


def server_command() -> list[str]:
    commands = server_stage().args("CMD")
    assert commands, "the server stage has no CMD"
    return exec_form(commands[-1])


def option_value(command: list[str], option: str) -> str:
    for index, arg in enumerate(command):
        if arg == option and index + 1 < len(command):
            return command[index + 1]
        if arg.startswith(option + "="):
            return arg.partition("=")[2]
    raise AssertionError(f"{option} not given in {command}")


def exposed_ports() -> set[int]:
    ports = " ".join(server_stage().args("EXPOSE")).split()
    return {int(port.split("/")[0]) for port in ports}


def bind_port() -> int:
    return int(option_value(server_command(), "--bind").rsplit(":", 1)[1])


# --- nginx.conf ---------------------------------------------------------------


def without_comments(conf: str) -> str:
    return re.sub(r"(^|\s)#[^\n]*", r"\1", conf)


def nginx_upstream_addresses(conf: str) -> set[str]:
    """The host:port of every proxy_pass, through `set $var` and `upstream` blocks."""
    conf = without_comments(conf)
    addresses: set[str] = set()
    for target in re.findall(r"\bproxy_pass\s+https?://([^;/\s]+)", conf):
        if target.startswith("$"):
            found = re.search(rf"\bset\s+\{target}\s+([^;\s]+)\s*;", conf)
            assert found, f"proxy_pass uses {target}, which is never set"
            addresses.add(found.group(1))
            continue
        block = re.search(rf"\bupstream\s+{re.escape(target)}\s*\{{([^}}]*)\}}", conf)
        if block:
            addresses.update(re.findall(r"\bserver\s+([^;\s]+)", block.group(1)))
        else:
            addresses.add(target)
    return addresses


def nginx_directives(conf: str) -> list[tuple[tuple[str, ...], str, str]]:
    """Every simple directive: (the blocks it is in, by their first word), its name,
    its arguments."""
    found: list[tuple[tuple[str, ...], str, str]] = []
    blocks: list[str] = []
    statement = ""
    for char in without_comments(conf):
        if char == "{":
            blocks.append(statement.split()[0])
            statement = ""
        elif char == "}":
            blocks.pop()
            statement = ""
        elif char == ";":
            name, _, args = statement.strip().partition(" ")
            found.append((tuple(blocks), name, args.strip()))
            statement = ""
        else:
            statement += char
    return found


def nginx_seconds(value: str) -> float:
    """An nginx time (`10s`, `1m`, `500ms`, `30`), in seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match is not None, f"not an nginx time: {value!r}"
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    return int(match.group(1)) * unit


def nginx_listen_ports(conf: str) -> set[int]:
    ports: set[int] = set()
    for address in re.findall(r"\blisten\s+([^;\s]+)", without_comments(conf)):
        port = address.rsplit(":", 1)[-1]
        ports.add(int(port) if port.isdigit() else 80)
    return ports


def mounted_nginx_conf() -> Path:
    mounts = bind_mounts(service("nginx"))
    assert NGINX_CONF_IN_CONTAINER in mounts, f"nginx mounts nothing at {NGINX_CONF_IN_CONTAINER}"
    path = REPO / mounts[NGINX_CONF_IN_CONTAINER].source
    assert path.is_file(), f"nginx mounts {path.relative_to(REPO)}, which does not exist"
    return path


def local_nginx_copy(conf: str, tmp: Path) -> str:
    """The config with upstreams on loopback and every file nginx writes under tmp."""
    for address in nginx_upstream_addresses(conf):
        host, port = address.rsplit(":", 1)
        conf = re.sub(rf"\b{re.escape(host)}:{port}\b", f"127.0.0.1:{port}", conf)
    conf = re.sub(r"^(\s*)pid\s+[^;]+;", rf"\1pid {tmp}/nginx.pid;", conf, flags=re.M)
    conf = re.sub(r"\berror_log\s+[^;\s]+", f"error_log {tmp}/error.log", conf)
    conf = re.sub(r"\baccess_log\s+(?!off\b)[^;\s]+", f"access_log {tmp}/access.log", conf)
    temp_paths = "".join(
        f"\n    {kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return re.sub(r"^(\s*http\s*\{)", lambda m: m.group(1) + temp_paths, conf, count=1, flags=re.M)


def nginx_binary() -> str:
    # Debian puts nginx in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail("nginx is not installed; install it (Debian: apt-get install -y nginx)")
    return found


# --- tests: compose.yaml ------------------------------------------------------


def test_compose_defines_the_services_and_no_obsolete_version_key() -> None:
    compose = load_compose()
    assert {"mongodb", "redis", "api", "nginx", "test"} <= set(compose["services"])
    assert "version" not in compose, "the Compose Specification has no top-level version"


def test_api_runs_three_replicas_without_a_host_port() -> None:
    api = service("api")
    assert api.get("deploy", {}).get("replicas") == 3
    # Replicas cannot share one published host port; nginx reaches them in the network.
    assert "ports" not in api


def test_api_sets_only_documented_shoal_env_vars_and_all_it_needs() -> None:
    env = environment(service("api"))
    shoal_vars = {name for name in env if name.startswith("SHOAL_")}
    assert shoal_vars <= DOCUMENTED_ENV_VARS, f"undocumented: {shoal_vars - DOCUMENTED_ENV_VARS}"
    assert shoal_vars >= REQUIRED_API_ENV_VARS, f"missing: {REQUIRED_API_ENV_VARS - shoal_vars}"


def test_api_secret_key_is_required_from_the_environment() -> None:
    value = environment(service("api"))["SHOAL_SECRET_KEY"]
    # `${VAR:?message}` makes compose refuse to start without it: no secret in the file.
    assert re.fullmatch(r"\$\{SHOAL_SECRET_KEY:\?[^}]+\}", value), value


def test_api_mongodb_uri_names_the_mongodb_service() -> None:
    uri = environment(service("api"))["SHOAL_MONGODB_URI"]
    assert url_address(uri) == ("mongodb", 27017)
    service("mongodb")


def test_api_redis_url_names_the_redis_service() -> None:
    url = environment(service("api"))["SHOAL_REDIS_URL"]
    assert urlsplit(url).scheme in {"redis", "rediss"}
    assert url_address(url) == ("redis", 6379)
    service("redis")


def test_replica_set_name_and_member_host_agree_with_the_uri() -> None:
    mongodb = service("mongodb")
    uri = environment(service("api"))["SHOAL_MONGODB_URI"]
    (replica_set,) = parse_qs(urlsplit(uri).query)["replicaSet"]
    assert option_value(mongodb["command"], "--replSet") == replica_set
    init_script = " ".join(mongodb["healthcheck"]["test"])
    assert "rs.initiate(" in init_script
    assert f"_id: '{replica_set}'" in init_script
    # Clients discover members by the host given here, so it must resolve for them.
    assert "host: 'mongodb:27017'" in init_script


def test_config_mounted_at_shoal_config_exists_and_is_what_the_image_reads() -> None:
    api = service("api")
    config_path = environment(api)["SHOAL_CONFIG"]
    mounts = bind_mounts(api)
    assert config_path in mounts, f"nothing is mounted at SHOAL_CONFIG={config_path}"
    mount = mounts[config_path]
    assert (REPO / mount.source).is_file(), f"{mount.source} does not exist in the repo"
    assert mount.read_only
    assert option_value(server_command(), "--config") == config_path


@pytest.mark.parametrize("name", ["api", "test"])
def test_service_waits_for_healthy_mongodb_and_redis(name: str) -> None:
    deps = depends_on(service(name))
    for dependency in ("mongodb", "redis"):
        assert deps.get(dependency) == "service_healthy", f"{name} -> {dependency}"
        assert "test" in service(dependency).get("healthcheck", {}), f"{dependency} healthcheck"


def serve_stop_seconds(toml_text: str) -> float:
    """The longest `shoal serve` with these hypercorn.toml settings takes to
    stop after SIGTERM (drain delay, requests, after_serving)."""
    settings = {**HYPERCORN_DEFAULTS, **tomllib.loads(toml_text)}
    return stop_seconds(float(settings["graceful_timeout"]), float(settings["drain_delay"]))


def test_api_stop_grace_period_outlasts_a_graceful_stop() -> None:
    """The image's hypercorn.toml is the repository's."""
    stopping = serve_stop_seconds((REPO / "hypercorn.toml").read_text())
    grace = duration_seconds(str(service("api")["stop_grace_period"]))
    assert grace > stopping, f"Docker kills at {grace}s, a replica may take {stopping}s"


def test_nginx_proxies_to_the_port_the_image_serves_on() -> None:
    image_ports = exposed_ports()
    port = bind_port()
    assert image_ports == {port}, f"EXPOSE {image_ports} but CMD binds {port}"
    addresses = nginx_upstream_addresses(mounted_nginx_conf().read_text())
    assert addresses == {f"api:{port}"}


def test_nginx_publishes_a_host_port_it_listens_on() -> None:
    listening = nginx_listen_ports(mounted_nginx_conf().read_text())
    published = [p for p in published_ports(service("nginx")) if p.published is not None]
    assert published, "nginx publishes no host port"
    assert {p.target for p in published} <= listening, f"nginx listens on {listening}"


def test_test_profile_targets_the_compose_databases() -> None:
    test = service("test")
    assert "test" in test.get("profiles", [])
    env = environment(test)
    assert url_address(env["SHOAL_TEST_MONGODB_URI"]) == ("mongodb", 27017)
    assert url_address(env["SHOAL_TEST_REDIS_URL"]) == ("redis", 6379)
    target = test["build"]["target"]
    assert target in {stage.name for stage in dockerfile_stages()}


# --- tests: Dockerfile --------------------------------------------------------


def test_dockerfile_has_a_test_stage_that_is_not_the_default_target() -> None:
    names = [stage.name for stage in dockerfile_stages()]
    assert "test" in names
    # `build: .` builds the last stage, which must be the server.
    assert server_command()[:2] == ["shoal", "serve"]


def test_image_runs_as_a_non_root_user() -> None:
    users = server_stage().args("USER")
    assert users, "the server stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_image_healthcheck_calls_healthz() -> None:
    checks = server_stage().args("HEALTHCHECK")
    assert checks, "the server stage has no HEALTHCHECK"
    command = checks[-1].partition("CMD")[2].strip()
    assert command, f"HEALTHCHECK without CMD: {checks[-1]}"
    assert f"127.0.0.1:{bind_port()}/healthz" in " ".join(exec_form(command))


def test_dockerfile_copies_only_files_that_exist() -> None:
    for stage in dockerfile_stages():
        for args in stage.args("COPY"):
            if "--from=" in args:
                continue
            words = exec_form(args) if args.startswith("[") else args.split()
            sources = [word for word in words if not word.startswith("--")][:-1]
            missing = [src for src in sources if not (REPO / src).exists()]
            assert not missing, f"stage {stage.name}: COPY of missing {missing}"


# --- tests: nginx.conf --------------------------------------------------------


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = nginx_binary()
    original = mounted_nginx_conf().read_text()
    local = local_nginx_copy(original, tmp_path)
    # The container's upstream name does not resolve here; the copy must not use it.
    assert not nginx_upstream_addresses(local) & nginx_upstream_addresses(original)
    conf = tmp_path / "nginx.conf"
    conf.write_text(local)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "startup.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "syntax is ok" in result.stderr


def test_nginx_passes_change_streams_unbuffered_and_outlasts_heartbeats() -> None:
    conf = mounted_nginx_conf().read_text(encoding="utf-8")
    match = re.search(r"location ~ /_stream\$ \{(?P<body>[^}]*)\}", conf)
    assert match is not None, "no location for /<resource>/_stream"
    body = match.group("body")
    assert re.search(r"^\s*proxy_buffering off;", body, re.M)
    timeout = re.search(r"^\s*proxy_read_timeout (\d+)([smh]);", body, re.M)
    assert timeout is not None
    seconds = int(timeout.group(1)) * {"s": 1, "m": 60, "h": 3600}[timeout.group(2)]
    assert seconds > StreamSettings().heartbeat * 2


def test_nginx_holds_slow_clients_and_gives_up_no_later_than_shoal() -> None:
    directives = nginx_directives(mounted_nginx_conf().read_text(encoding="utf-8"))
    http = {name: args for blocks, name, args in directives if blocks == ("http",)}
    # Bodies read whole before Shoal sees the request; answers taken at once.
    assert http.get("proxy_request_buffering") == "on"
    assert http.get("proxy_buffering") == "on"
    assert http.get("reset_timedout_connection") == "on"
    deadlines = SlowClientSettings()
    assert nginx_seconds(http["client_body_timeout"]) <= deadlines.body_timeout
    assert nginx_seconds(http["send_timeout"]) <= deadlines.send_timeout
    # Buffering answers is turned off in one location only, the change streams'
    # (test_nginx_passes_change_streams_unbuffered...); request buffering nowhere.
    buffering = [blocks for blocks, name, _ in directives if name == "proxy_buffering"]
    assert buffering == [("http",), ("http", "server", "location")]
    assert ("proxy_request_buffering", "off") not in {(name, args) for _, name, args in directives}


# --- Kubernetes (deploy/k8s) ------------------------------------------------------

#: The oldest Kubernetes the manifests are written for, and the newest
#: kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                documents.append((path.name, document))
    return documents


def k8s(kind: str) -> dict[str, Any]:
    found = [document for _, document in k8s_documents() if document["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def api_container() -> dict[str, Any]:
    containers = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def container_env() -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in api_container().get("env", [])}


def config_map_file(path_in_pod: str) -> str:
    """The ConfigMap entry that appears at ``path_in_pod`` through the volume mounts."""
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in api_container()["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path_in_pod.startswith(prefix) and "configMap" in volumes[mount["name"]]:
            assert (
                volumes[mount["name"]]["configMap"]["name"] == k8s("ConfigMap")["metadata"]["name"]
            )
            key = path_in_pod[len(prefix) :]
            data = k8s("ConfigMap")["data"]
            assert key in data, f"the ConfigMap has no {key} for {path_in_pod}"
            return str(data[key])
    raise AssertionError(f"nothing from the ConfigMap is mounted at {path_in_pod}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_are_valid_kubernetes_objects(version: str) -> None:
    documents = [(name, doc) for name, doc in k8s_documents() if doc["kind"] != "Kustomization"]
    assert {doc["kind"] for _, doc in documents} == {
        "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }  # fmt: skip
    for name, document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {error}")


def test_the_validator_catches_a_broken_manifest() -> None:
    broken = k8s("Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(k8s("Kustomization")["resources"])
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files


def test_k8s_probes_use_shoals_health_routes_on_the_served_port() -> None:
    container = api_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert set(ports.values()) == exposed_ports() == {bind_port()}
    expected = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert ports.get(check["port"], check["port"]) == bind_port(), probe
    # Liveness never depends on MongoDB or Redis: an outage must not restart pods.
    assert container["livenessProbe"]["httpGet"]["path"] != "/readyz"


def test_k8s_env_is_documented_complete_and_resolvable() -> None:
    env = container_env()
    shoal_vars = {name for name in env if name.startswith("SHOAL_")}
    assert shoal_vars <= DOCUMENTED_ENV_VARS, f"undocumented: {shoal_vars - DOCUMENTED_ENV_VARS}"
    assert shoal_vars >= REQUIRED_API_ENV_VARS, f"missing: {REQUIRED_API_ENV_VARS - shoal_vars}"
    secret = k8s("Secret")
    for name, item in env.items():
        reference = item.get("valueFrom", {}).get("secretKeyRef")
        if reference is not None:
            assert reference["name"] == secret["metadata"]["name"], name
            assert reference["key"] in secret["stringData"], name
    # What must stay secret comes from the Secret, never a literal.
    for name in ("SHOAL_SECRET_KEY", "SHOAL_MONGODB_URI", "SHOAL_REDIS_URL"):
        assert "secretKeyRef" in env[name].get("valueFrom", {}), name


def test_k8s_config_files_are_what_shoal_accepts() -> None:
    env = container_env()
    config = yaml.safe_load(config_map_file(env["SHOAL_CONFIG"]["value"]))
    secret = k8s("Secret")["stringData"]
    overrides = {
        "SHOAL_ENVIRONMENT": env["SHOAL_ENVIRONMENT"]["value"],
        "SHOAL_MONGODB_URI": secret["SHOAL_MONGODB_URI"],
        "SHOAL_REDIS_URL": secret["SHOAL_REDIS_URL"],
        "SHOAL_SECRET_KEY": "a real secret key of at least 32 characters",
    }
    settings = load_settings(config, env=overrides)
    assert settings.environment == "production"
    assert settings.redis.url is not None
    # The placeholder in secret.yaml is refused, so nobody runs with it.
    with pytest.raises(Exception, match="placeholder"):
        load_settings(config, env={**overrides, "SHOAL_SECRET_KEY": secret["SHOAL_SECRET_KEY"]})


def test_k8s_hypercorn_toml_is_read_as_shoal_serve_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = container_env()
    text = config_map_file(env["SHOAL_HYPERCORN_CONFIG"]["value"])
    (tmp_path / "hypercorn.toml").write_text(text)
    monkeypatch.setenv("SHOAL_HYPERCORN_CONFIG", str(tmp_path / "hypercorn.toml"))
    served = serve_config(ServeOptions())
    assert served.hypercorn.workers >= 2
    assert served.hypercorn.worker_class == "uvloop"


def test_k8s_grace_period_outlasts_prestop_and_a_graceful_stop() -> None:
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    pre_stop = api_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    waited = float(pre_stop[1])
    assert waited > 0
    toml = config_map_file(container_env()["SHOAL_HYPERCORN_CONFIG"]["value"])
    stopping = serve_stop_seconds(toml)
    grace = float(pod["terminationGracePeriodSeconds"])
    assert grace > waited + stopping, f"SIGKILL at {grace}s; preStop {waited}s + stop {stopping}s"


def test_k8s_pods_run_as_the_images_non_root_user() -> None:
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    image_user = server_stage().args("USER")[-1].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == image_user
    container = api_container()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]


def test_k8s_service_hpa_and_pdb_select_the_deployment() -> None:
    deployment = k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = k8s("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {port["name"] for port in api_container()["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports
    assert k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = k8s("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # The budget leaves a replica when the autoscaler is at its floor.
    assert hpa["spec"]["minReplicas"] - k8s("PodDisruptionBudget")["spec"]["maxUnavailable"] >= 2


def test_every_variable_shoal_reads_is_documented() -> None:
    reference = (REPO / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")
    assert {name for name in DOCUMENTED_ENV_VARS if f"`{name}`" not in reference} == set()
