"""docker-compose without a Docker engine: schema, mounted paths, ports and environment, Dockerfile."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker-compose.cpu.yml"


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's `!reset` / `!override` merge tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_object(node))


def load(path):
    return yaml.load(path.read_text(), Loader=ComposeLoader)


@pytest.fixture(scope="module")
def compose():
    return load(COMPOSE)


def schema():
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", [COMPOSE, CPU_OVERRIDE], ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(path):
    import jsonschema

    jsonschema.validate(load(path), schema())


def test_every_mounted_path_exists(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_triton_serves_the_repository_with_a_gpu_and_a_healthcheck(compose):
    triton = compose["services"]["triton"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", triton["image"])
    assert "./model_repository:/models:ro" in triton["volumes"]
    assert any("--model-config-name=" in arg for arg in triton["command"])
    config_name = re.search(r"--model-config-name=\$\{TRITON_MODEL_CONFIG:-(\w+)\}", " ".join(triton["command"])).group(1)
    assert (ROOT / "model_repository" / "methane_seg" / "configs" / f"{config_name}.pbtxt").is_file()
    assert triton["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert triton["healthcheck"]["start_period"]
    cpu = load(CPU_OVERRIDE)["services"]["triton"]
    assert "--model-config-name=onnxruntime_cpu" in cpu["command"] and cpu["deploy"] is None
    assert (ROOT / "model_repository" / "methane_seg" / "configs" / "onnxruntime_cpu.pbtxt").is_file()


def test_triton_release_matches_the_pip_server_and_client():
    """24.10 is Triton 2.51: the release of nvidia-pytriton's server and of tritonclient here."""
    import tritonclient

    tag = re.search(r"tritonserver:(\d\d\.\d\d)", COMPOSE.read_text()).group(1)
    release = {"24.10": "2.51"}[tag]
    from importlib.metadata import version

    assert version("tritonclient").startswith(release)
    assert tritonclient is not None


def test_webapp_environment_agrees_with_its_configuration(compose):
    from webapp.config import settings_from_env

    web = compose["services"]["webapp"]
    documented = (ROOT / "webapp" / "config.py").read_text()
    for key in web["environment"]:
        assert key in documented, f"docker-compose sets {key}, which the web app does not read"
    env = web["environment"]
    host, port = env["TRITON_URL"].split(":")
    assert host == "triton" and env["TRITON_PROTOCOL"] == "grpc" and port == "8001"
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and "@db:5432/" in env["DATABASE_URL"]
    assert web["depends_on"]["triton"]["condition"] == "service_healthy"
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    assert "127.0.0.1:5000:5000" in web["ports"]
    assert set(settings_from_env())  # the configuration module loads


def test_dockerfile_installs_the_serving_extra_and_copies_what_exists():
    import tomllib

    dockerfile = (ROOT / "webapp" / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = re.search(r"pip install '\.\[(\w+)\]'", dockerfile).group(1)
    assert installed in extras and any(dep.startswith("gunicorn") for dep in extras[installed])
    for source in re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile, flags=re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"the Dockerfile copies {item}, which is missing"
    assert "0.0.0.0:5000" in dockerfile and "webapp.app:create_app()" in dockerfile


def test_prometheus_scrapes_triton_and_the_webapp(compose):
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"triton:8002", "webapp:5000"}
    assert set(compose["services"]) >= {"triton", "webapp", "db", "prometheus", "grafana"}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "methane-seg.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert "nv_inference_count" in exprs and "methane_seg_http_requests_total" in exprs
