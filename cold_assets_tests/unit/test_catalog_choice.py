"""Which catalog the cold tier goes to: a configured one by its name, the embedded one only
where no catalog is configured at all (pyiceberg's own configuration, from the environment)."""

import os

import pytest

from cold_assets.defs.resources import IcebergResource
from cold_assets.settings import THROWAWAY_CATALOG


@pytest.fixture
def production_catalog(monkeypatch, tmp_path):
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", f"sqlite:///{tmp_path / 'production.db'}")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", (tmp_path / "warehouse").as_uri())
    return tmp_path


def test_a_misnamed_catalog_is_refused_not_taken_for_the_embedded_one(production_catalog):
    local = production_catalog / "home" / "catalog.db"
    resource = IcebergResource(catalog_name="prod", default_uri=f"sqlite:///{local}")
    with pytest.raises(ValueError, match=r"catalog 'prod' \(COLD_CATALOG\) has no pyiceberg configuration, but \['iceberg'\] has"):
        resource.catalog()
    assert not local.parent.exists()  # nothing written


def test_the_configured_catalog_by_its_name_and_throwaway_work_by_its_own(production_catalog):
    assert not IcebergResource(catalog_name="iceberg").embedded
    assert IcebergResource(catalog_name=THROWAWAY_CATALOG, default_uri="sqlite:///x").embedded


def test_with_no_catalog_configured_the_embedded_one_is_the_default(monkeypatch):
    for name in [n for n in os.environ if n.startswith("PYICEBERG_CATALOG__")]:
        monkeypatch.delenv(name)
    assert IcebergResource(catalog_name="iceberg", default_uri="sqlite:///x").embedded
