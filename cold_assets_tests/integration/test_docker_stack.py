"""The production stack in docker/, checked as far as this machine can: it has no Docker
engine, so the compose file is parsed and held to the rules of the production issue."""

import re
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COLD_INFRASTRUCTURE = ("minio", "postgres", "iceberg-rest", "prometheus", "grafana")  # budget: 1.5 CPU, 2 GB in all
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
    assert {"cold-assets-metrics", "prometheus", "grafana"} <= set(services)
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:25.8.")
    assert services["code-location"]["build"]["dockerfile"] == "docker/Dockerfile"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "openjdk-17-jre-headless" in dockerfile and "cold-assets jars" in dockerfile
    # Production's instance (PostgreSQL), not the root's local one.
    assert "COPY docker/dagster.yaml $DAGSTER_HOME/dagster.yaml" in dockerfile
    assert "postgres" in yaml.safe_load((DOCKER / "dagster.yaml").read_text())["storage"]


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
    assert round(sum(float(limit["cpus"]) for limit in limits), 6) <= 1.5
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
    assert published == {"auth-proxy", "clickhouse", "grafana"}, published
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


# Which services each secret may reach: its own work, nothing more. A new secret must be
# placed here before the stack test passes.
SECRET_REACH = {
    "POSTGRES_PASSWORD": {"postgres"},
    "DAGSTER_PG_PASSWORD": {"postgres", "code-location", "webserver", "daemon", "cold-assets-metrics"},
    "ICEBERG_PG_PASSWORD": {"postgres", "iceberg-rest"},
    "MINIO_ROOT_PASSWORD": {"minio", "minio-init"},
    "COLD_S3_WRITER_PASSWORD": {"minio-init", "iceberg-rest", "code-location"},
    "COLD_S3_READER_PASSWORD": {"minio-init", "clickhouse", "cold-assets-metrics"},
    "CLICKHOUSE_ADMIN_PASSWORD": {"clickhouse"},
    "CLICKHOUSE_PASSWORD": {"clickhouse", "code-location"},
    "DAGSTER_UI_PASSWORD": {"auth-proxy"},
    "COLD_ALERT_WEBHOOK_URL": {"code-location"},
    "GRAFANA_ADMIN_PASSWORD": {"grafana"},
}


def test_each_secret_reaches_only_the_services_whose_work_needs_it():
    secrets = {name for name in env_example() if SECRET_NAMES.search(name)}
    assert secrets == set(SECRET_REACH), "a secret of docker/.env.example is not placed in SECRET_REACH"
    for service_name, service in compose()["services"].items():
        environment = " ".join(str(v) for v in (service.get("environment") or {}).values())
        reached = set(re.findall(r"\$\{([A-Z0-9_]+)", environment)) & secrets
        for secret in reached:
            assert service_name in SECRET_REACH[secret], f"{secret} reaches {service_name}"
    services = compose()["services"]
    for name in ("webserver", "daemon"):  # they reach the code location over gRPC, nothing else
        assert set(services[name]["environment"]) == {"DAGSTER_HOME", "DAGSTER_POSTGRES_URL"}


def test_only_the_ui_proxy_listens_beyond_loopback_and_the_unauthenticated_catalog_is_fenced():
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert name == "auth-proxy" or port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    networks = compose()["networks"]
    on = {name: set(service["networks"]) for name, service in services.items()}
    # A network with a route out (not internal) serves one service alone.
    for network, spec in networks.items():
        if not (spec or {}).get("internal"):
            members = {name for name, joined in on.items() if network in joined}
            assert len(members) == 1, f"{network} has a route out and joins {members}"
    proxy_neighbours = {name for name, joined in on.items() if joined & on["auth-proxy"]} - {"auth-proxy"}
    assert proxy_neighbours == {"webserver"}, proxy_neighbours  # not PostgreSQL, not the code server's gRPC
    # The REST catalog takes commits from whoever reaches it: only its own dependencies, the
    # code location and the metrics exporter (which reads metadata, with no S3 write
    # credential) share a network with it.
    neighbours = {name for name, joined in on.items() if joined & on["iceberg-rest"]} - {"iceberg-rest"}
    assert neighbours == {"code-location", "cold-assets-metrics", "postgres", "minio", "minio-init"}, neighbours
    assert "COLD_S3_WRITER_PASSWORD" not in str(services["cold-assets-metrics"]["environment"])
    # The writers start once minio-init made their user.
    for name in ("iceberg-rest", "code-location"):
        assert services[name]["depends_on"]["minio-init"] == {"condition": "service_completed_successfully"}
    # The admin that grants NAMED COLLECTION holds its control (ClickHouse withholds it from XML users).
    assert services["clickhouse"]["environment"]["CLICKHOUSE_USER"] == "admin"
    assert "<admin>" in (DOCKER / "clickhouse" / "admin.xml").read_text()
    assert "./clickhouse/admin.xml:/etc/clickhouse-server/users.d/admin.xml:ro" in services["clickhouse"]["volumes"]


def test_the_image_carries_every_spark_jar_pinned_and_maven_at_run_time_is_off_by_default():
    assert env_example()["COLD_SPARK_PACKAGES"] == ""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert dockerfile.index("COLD_SPARK_S3=true") < dockerfile.index("RUN cold-assets jars")
    # The versions the suite proves, and the licence the wheel declares.
    assert 'pip install --no-cache-dir ".[pinned]"' in dockerfile and "COPY pyproject.toml README.md LICENSE" in dockerfile


def test_the_postgres_init_gives_dagster_and_the_catalog_a_role_and_database_each(tmp_path):
    """docker/postgres-init.sh run as the image runs it, against a real PostgreSQL."""
    import os
    import subprocess

    import psycopg2

    from cold_assets_tests.support.throwaway_postgres import PG_BIN, throwaway_postgres

    with throwaway_postgres(databases=()) as server:
        roles = {"DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "d-secret", "DAGSTER_DB": "dagster",
                 "ICEBERG_PG_USER": "iceberg", "ICEBERG_PG_PASSWORD": "i-secret'\"", "ICEBERG_DB": "iceberg"}
        env = {**os.environ, **roles, "POSTGRES_USER": server.user, "PGPASSWORD": server.password,
               "PGHOST": server.host, "PGPORT": str(server.port), "PATH": f"{PG_BIN}:{os.environ['PATH']}"}
        done = subprocess.run(["sh", str(DOCKER / "postgres-init.sh")], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

        def connect(user: str, password: str, database: str):
            return psycopg2.connect(host=server.host, port=server.port, user=user, password=password, dbname=database)

        with connect("dagster", roles["DAGSTER_PG_PASSWORD"], "dagster") as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE runs (id int)")  # it owns its database
            cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (False, False, False)
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            connect("dagster", roles["DAGSTER_PG_PASSWORD"], "iceberg")
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            connect("iceberg", roles["ICEBERG_PG_PASSWORD"], "dagster")
        bad = subprocess.run(["sh", str(DOCKER / "postgres-init.sh")], env={**env, "ICEBERG_DB": "ice; DROP"},
                             capture_output=True, text=True)
        assert bad.returncode == 1 and "is not a plain identifier" in bad.stderr
        in_url = subprocess.run(["sh", str(DOCKER / "postgres-init.sh")], env={**env, "DAGSTER_PG_PASSWORD": "p@ss/word"},
                                capture_output=True, text=True)
        assert in_url.returncode == 1 and "DAGSTER_PG_PASSWORD must be letters" in in_url.stderr


def test_prometheus_scrapes_the_exporter_and_grafana_reads_prometheus_with_the_dashboards_data_source():
    import json

    services = compose()["services"]
    exporter = services["cold-assets-metrics"]
    listen = exporter["command"][exporter["command"].index("--listen") + 1]
    port = listen.rsplit(":", 1)[1]
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (scrape,) = config["scrape_configs"]
    assert scrape["static_configs"][0]["targets"] == [f"cold-assets-metrics:{port}"]
    assert "runbook_base" in config["global"]["external_labels"]
    mounts = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/cold_assets_rules.yml"} <= mounts
    assert config["rule_files"] == ["cold_assets_rules.yml"]  # beside prometheus.yml, where it is mounted
    source = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "cold-assets.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {source["uid"]}
    provider = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "dashboards" / "cold-assets.yml").read_text())["providers"][0]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in services["grafana"]["volumes"]
    assert {"monitoring"} <= set(services["prometheus"]["networks"]) & set(services["grafana"]["networks"]) & set(exporter["networks"])
