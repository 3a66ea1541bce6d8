"""The production stack in docker/, checked as far as this machine can: it has no Docker
engine, so the compose file is parsed and held to the rules of the production issue."""

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COLD_INFRASTRUCTURE = ("minio", "postgres", "iceberg-rest")  # budget: 1.5 CPU, 2 GB in all
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|WEBHOOK", re.I)


def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def memory_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)", str(value)).groups()
    return int(float(number) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit])


def test_the_stack_has_every_service_the_production_shape_needs():
    services = compose()["services"]
    assert {"clickhouse", "minio", "postgres", "iceberg-rest", "code-location", "webserver", "daemon"} <= set(services)
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:25.8.")
    assert services["code-location"]["build"]["dockerfile"] == "docker/Dockerfile"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "openjdk-17-jre-headless" in dockerfile and "cold-assets jars" in dockerfile


def test_images_are_pinned_and_services_have_health_checks_restart_policies_and_limits():
    spec, values = compose(), env_example()
    for name, service in spec["services"].items():
        # Our own image's version is a variable (rollback = set the previous one); resolve it.
        image = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: values.get(m.group(1), ""), service.get("image", ""))
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: image {image!r} is not pinned to a version"
        assert "restart" in service, f"{name}: no restart policy"
        if service["restart"] != "no":  # one-shot jobs excepted
            assert "healthcheck" in service, f"{name}: no health check"
        assert "limits" in service.get("deploy", {}).get("resources", {}), f"{name}: no resource limits"
    named = set(spec["volumes"])
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith(".") or source in named, f"{name}: volume {source} is neither named nor a file of the repo"


def test_the_cold_tiers_own_infrastructure_fits_in_one_and_a_half_cpu_and_two_gigabytes():
    services = compose()["services"]
    limits = [services[name]["deploy"]["resources"]["limits"] for name in COLD_INFRASTRUCTURE]
    assert sum(float(limit["cpus"]) for limit in limits) <= 1.5
    assert sum(memory_bytes(limit["memory"]) for limit in limits) <= 2 * 1024**3


def test_every_variable_the_stack_reads_is_documented_and_no_secret_is_committed():
    text = (DOCKER / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    documented = env_example()
    assert referenced - set(documented) == set(), "variables used but missing from docker/.env.example"
    assert set(documented) - referenced == set(), "variables documented but never used"
    for name, value in documented.items():
        if SECRET_NAMES.search(name):
            assert value == "", f"{name} has a value in a committed file"
    # Secrets are never written into the compose file itself: only referenced.
    for name, service in compose()["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if SECRET_NAMES.search(key) and value is not None:
                assert "${" in str(value), f"{name}: {key} is set to a literal"


def test_dagster_is_published_only_behind_basic_authentication():
    services = compose()["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"auth-proxy", "clickhouse"}, published
    proxy = services["auth-proxy"]
    assert proxy["environment"]["DAGSTER_UPSTREAM"] == "http://webserver:3000"
    assert proxy["ports"] == ["${DAGSTER_WEBSERVER_PORT}:8080"]
    mounts = {volume.split(":")[1] for volume in proxy["volumes"]}
    assert {"/etc/nginx/templates/default.conf.template", "/docker-entrypoint.d/40-htpasswd.sh"} <= mounts
    template = (DOCKER / "nginx" / "default.conf.template").read_text()
    assert "auth_basic " in template and "auth_basic_user_file ${HTPASSWD_FILE};" in template


def test_clickhouse_reads_the_cold_tier_as_a_read_only_user_scoped_to_the_warehouse():
    import json

    services = compose()["services"]
    clickhouse = services["clickhouse"]
    assert not any("MINIO_ROOT" in str(value) for value in clickhouse["environment"].values())
    assert "./clickhouse/cold_s3.xml:/etc/clickhouse-server/config.d/cold_s3.xml:ro" in clickhouse["volumes"]
    collection = (DOCKER / "clickhouse" / "cold_s3.xml").read_text()
    assert 'from_env="COLD_S3_READER_USER"' in collection and 'from_env="COLD_S3_READER_PASSWORD"' in collection
    init = services["minio-init"]
    assert init["entrypoint"] == ["/bin/sh", "/init/init.sh"] and "./minio:/init:ro" in init["volumes"]
    policy = json.loads((DOCKER / "minio" / "cold-reader-policy.json").read_text().replace("${COLD_BUCKET}", "cold-tier"))
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}  # nothing that writes
    objects = [r for s in policy["Statement"] if "s3:GetObject" in s["Action"] for r in s["Resource"]]
    assert objects == ["arn:aws:s3:::cold-tier/warehouse/*"]
    view = (DOCKER.parent / "cold_assets" / "sql" / "federated_view.sql").read_text()
    assert "SQL SECURITY DEFINER" in view  # analysts need SELECT on the views, not the collection
