"""The jars Spark needs for Iceberg maintenance, provisioned from package registries only.

Every artifact is pinned by sha256 and checked before use:
- Iceberg 1.10.2's Spark 3.5 runtime, from the PyPI wheel snowpark-connect-deps-iceberg;
- Jackson 2.18.8, from the PyPI wheel snowpark-connect-deps-2, relocated to
  org.apache.iceberg.shaded.com.fasterxml.jackson with Debian's jarjar: that copy of the
  runtime lacks Iceberg's relocated Jackson classes (the relocation is deterministic, so
  its output is pinned too);
- the JDBC drivers of the catalog (SQLite, PostgreSQL), from Debian's packages;
- for a warehouse on S3 (COLD_SPARK_S3), Iceberg's AWS bundle (S3FileIO and the AWS SDK),
  from Maven Central: no wheel or Debian package carries it. The image's build fetches it.

`provision()` fills the cache (COLD_SPARK_JARS_DIR, default COLD_HOME/spark-jars) and is a
no-op once every jar is there with the right checksum, so it is safe offline after the
first run. Production may instead give Maven coordinates in COLD_SPARK_PACKAGES
(spark.jars.packages); see docs/maintenance.md.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def java_executable() -> str | None:
    """The java Spark starts: JAVA_HOME's if set, as Spark's launcher does, else PATH's."""
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")


class JavaMissing(RuntimeError):
    """No Java 17 where Spark would start it (maintenance/spark.py require_java)."""


class SparkJarsError(RuntimeError):
    """The jars are missing, or a download or a checksum does not match its pin."""


@dataclass(frozen=True)
class Wheel:
    requirement: str  # name==version
    sha256: str


@dataclass(frozen=True)
class PinnedJar:
    file: str  # name in the cache
    sha256: str
    wheel: Wheel | None = None  # extracted from this wheel ...
    member: str | None = None  # ... at this path
    relocate: bool = False  # run through jarjar (Jackson -> Iceberg's shaded package)
    debian_package: str | None = None  # or copied from this Debian package ...
    debian_path: str | None = None  # ... at this path
    maven_url: str | None = None  # or downloaded from this Maven Central URL


ICEBERG_WHEEL = Wheel(
    "snowpark-connect-deps-iceberg==1.0.3", "4f280e3677ab8d3a89f16647fc392ab2a3d48369f0c48873fe07bc1e74e06ffc"
)
JACKSON_WHEEL = Wheel("snowpark-connect-deps-2==3.56.7", "567f48506b8dd6c78083210aa6e741ba057d5a9b8ce45d58b7a12250f5ba7a5d")
JARJAR_PACKAGE = "libjarjar-java"
JARJAR_PATH = "/usr/share/java/jarjar-1.4.jar"
JARJAR_SHA256 = "08528dc8f4e1eb70e03d37d432ac1d60d55ae50e22038587a194a857606a296e"
JACKSON_RULE = "rule com.fasterxml.jackson.** org.apache.iceberg.shaded.com.fasterxml.jackson.@1\n"

JARS = (
    PinnedJar(
        "iceberg-spark-runtime-3.5_2.12-1.10.2.jar",
        "5b30080c7bbbced0fb0900894b7ea0200b1bbb2e4c355ebe727baafaf49c16f6",
        wheel=ICEBERG_WHEEL,
        member="snowpark_connect_deps_iceberg/jars/iceberg-spark-runtime-3.5_2.12-1.10.2.jar",
    ),
    *(
        PinnedJar(
            f"iceberg-shaded-jackson-{part}-2.18.8.jar",
            relocated_sha,
            wheel=JACKSON_WHEEL,
            member=f"snowpark_connect_deps_2/jars/jackson-{part}-2.18.8.jar",
            relocate=True,
        )
        for part, relocated_sha in (
            ("core", "e85a5718e62cefb659c04b7ae4f4db80e18ecd610756a02f26e79e80dbd027e3"),
            ("databind", "1e7f6375de23de8ea14975ec5d875d4b8e96a03969d59e3f9c1163ddf8891962"),
            ("annotations", "b8234a6021806e4395b543eea18a9f7c47cae6c4edd4444cd793a211c35ee287"),
        )
    ),
    PinnedJar(
        "sqlite-jdbc-3.40.1.0.jar",
        "e0ded1fd98ca4004ede5c03add5af765014f80009ec7bbd13c79e1b892190ba5",
        debian_package="libxerial-sqlite-jdbc-java",  # its JNI library comes with it
        debian_path="/usr/share/java/xerial-sqlite-jdbc-3.40.1.0.jar",
    ),
    PinnedJar(
        "postgresql-42.5.5.jar",
        "e68b153660caa7f47505d323829e995bd84fec7a30d2160f3ca272f774569a22",
        debian_package="libpostgresql-jdbc-java",
        debian_path="/usr/share/java/postgresql-42.5.5.jar",
    ),
)


MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
# Pinned to the sha256 of Maven Central's file; this machine cannot reach Maven Central, so the
# pin is first checked where the image is built (a mismatch stops that build).
S3_JARS = (
    PinnedJar(
        "iceberg-aws-bundle-1.10.2.jar",
        "a2395ab49bf87e971e5588db644194ac18e9c0e0b44a7ad5a422a97648a38415",
        maven_url=f"{MAVEN_CENTRAL}/org/apache/iceberg/iceberg-aws-bundle/1.10.2/iceberg-aws-bundle-1.10.2.jar",
    ),
)


def pinned_jars(s3: bool) -> tuple[PinnedJar, ...]:
    """The jars Spark loads: the catalog's, and S3's when the warehouse is on S3."""
    return JARS + S3_JARS if s3 else JARS


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def _check(path: Path, sha256: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != sha256:
        raise SparkJarsError(f"{what}: sha256 {actual} does not match the pinned {sha256}")


def missing_jars(cache: Path, jars: tuple[PinnedJar, ...] = JARS) -> list[str]:
    return [jar.file for jar in jars if not _verified(cache / jar.file, jar.sha256)]


def jar_paths(cache: Path, jars: tuple[PinnedJar, ...] = JARS) -> list[Path]:
    """The verified jars, or an error saying how to provision them."""
    missing = missing_jars(cache, jars)
    if missing:
        raise SparkJarsError(
            f"Spark jars missing or corrupt in {cache}: {', '.join(missing)}. "
            "Run `make jars` (or `cold-assets jars`), or set COLD_SPARK_PACKAGES to Maven coordinates."
        )
    return [cache / jar.file for jar in jars]


def _download(url: str, target: Path) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        raise SparkJarsError(f"could not download {url}: {error}") from None


def _apt_install(packages: list[str]) -> None:
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    def quiet(args: list[str]) -> None:
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    try:
        try:
            quiet(command)
        except subprocess.CalledProcessError:  # stale package lists: refresh them once
            quiet(["apt-get", "update"])
            quiet(command)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        raise SparkJarsError(f"could not install Debian packages {' '.join(packages)} ({detail.strip()}); install them as root") from None


def _download_wheel(wheel: Wheel, into: Path) -> Path:
    # pip checks the pinned hash itself (--require-hashes); we check again after.
    requirements = into / f"{wheel.requirement.split('==')[0]}.txt"
    requirements.write_text(f"{wheel.requirement} --hash=sha256:{wheel.sha256}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         "--require-hashes", "-r", str(requirements), "-d", str(into)],
        check=True,
    )
    name, version = wheel.requirement.split("==")
    found = list(into.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if len(found) != 1:
        raise SparkJarsError(f"pip did not download one wheel for {wheel.requirement}: {found}")
    _check(found[0], wheel.sha256, wheel.requirement)
    return found[0]


def _without_versioned_entries(jar: Path, out: Path) -> None:
    """Jackson-core is a multi-release jar; jarjar maps its META-INF/versions copies onto the
    base classes' names and fails on the duplicates. The base classes are enough on Java 17."""
    with zipfile.ZipFile(jar) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if not info.filename.startswith("META-INF/versions/"):
                dst.writestr(info, src.read(info.filename))


def _relocate(jar: Path, out: Path, work: Path) -> None:
    _check(Path(JARJAR_PATH), JARJAR_SHA256, JARJAR_PATH)
    flat = work / f"flat-{jar.name}"
    _without_versioned_entries(jar, flat)
    rules = work / "jackson.rules"
    rules.write_text(JACKSON_RULE)
    subprocess.run(["java", "-jar", JARJAR_PATH, "process", str(rules), str(flat), str(out)], check=True)


def provision(cache: Path, jars: tuple[PinnedJar, ...] = JARS, log: Callable[[str], object] = print) -> list[Path]:
    """Makes every pinned jar of `jars` present and verified in `cache`; returns their paths."""
    cache.mkdir(parents=True, exist_ok=True)
    todo = [jar for jar in jars if not _verified(cache / jar.file, jar.sha256)]
    if not todo:
        return jar_paths(cache, jars)
    needed = {jar.debian_package: jar.debian_path for jar in todo if jar.debian_package and jar.debian_path}
    if any(jar.relocate for jar in todo):
        needed[JARJAR_PACKAGE] = JARJAR_PATH
    absent = sorted(package for package, path in needed.items() if not Path(path).exists())
    if absent:
        log(f"installing Debian packages: {' '.join(absent)}")
        _apt_install(absent)
    with tempfile.TemporaryDirectory(prefix="spark-jars-", dir=cache) as tmp:
        work = Path(tmp)
        wheels: dict[Wheel, zipfile.ZipFile] = {}
        try:
            for jar in todo:
                target = work / jar.file
                if jar.wheel is not None and jar.member is not None:
                    if jar.wheel not in wheels:
                        log(f"downloading {jar.wheel.requirement} from PyPI")
                        wheels[jar.wheel] = zipfile.ZipFile(_download_wheel(jar.wheel, work))
                    extracted = work / Path(jar.member).name
                    extracted.write_bytes(wheels[jar.wheel].read(jar.member))
                    if jar.relocate:
                        _relocate(extracted, target, work)
                    else:
                        extracted.rename(target)
                elif jar.debian_path is not None:
                    shutil.copyfile(jar.debian_path, target)  # follows Debian's symlinks
                elif jar.maven_url is not None:
                    log(f"downloading {jar.maven_url}")
                    _download(jar.maven_url, target)
                else:
                    raise SparkJarsError(f"{jar.file}: pinned with no wheel member, Debian path or Maven URL")
                _check(target, jar.sha256, jar.file)
                target.replace(cache / jar.file)  # only verified jars enter the cache
                log(f"  {jar.file}  sha256 ok")
        finally:
            for archive in wheels.values():
                archive.close()
    return jar_paths(cache, jars)

