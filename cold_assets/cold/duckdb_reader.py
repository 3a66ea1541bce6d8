"""DuckDB over the cold tier: the tables are plain Iceberg, so any engine reads them.

DuckDB reads a table from its current metadata file with `iceberg_scan(?)` (bind
`table.metadata_location`). Its iceberg extension, and the avro extension it reads manifests
with, come from their PyPI wheels (duckdb-extension-iceberg, duckdb-extension-avro, the
project's `duckdb` extra) and are loaded from those files: no download, no extension
repository, which a production host behind a proxy often cannot reach.
"""

import importlib
from pathlib import Path

import duckdb

EXTENSIONS = ("avro", "iceberg")  # in load order: iceberg needs avro


def extension_file(name: str) -> Path:
    """The extension's binary in its PyPI package, built for this DuckDB version."""
    try:
        package = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise RuntimeError(
            f"DuckDB's {name} extension is not installed: pip install 'cold-assets[duckdb]' "
            f"(duckdb-extension-{name}=={duckdb.__version__})"
        ) from None
    path = Path(str(package.__file__)).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(f"duckdb-extension-{name} has no build for DuckDB {duckdb.__version__} ({path} missing)")
    return path


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads Iceberg, with extension downloads switched off."""
    connection = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in EXTENSIONS:
        # LOAD takes a literal path, not a parameter; the path is the package's own file.
        connection.execute(f"LOAD '{extension_file(name)}'")
    return connection
