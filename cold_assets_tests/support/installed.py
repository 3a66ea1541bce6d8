"""cold-assets as a user installs it: a wheel built from the sources alone, installed into a
fresh virtual environment outside the repository. Its dependencies come from the project's
environment through a path file (installing dagster, pyiceberg, chDB and pyspark again would
cost minutes and prove nothing about this package); cold-assets itself comes from the wheel."""

import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    cli: Path  # the venv's `cold-assets` console script


def build_wheel(into: Path) -> Path:
    source = into / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    # A build/ or egg-info left in a checkout would add files of its own: the sources alone.
    for name in ("cold_assets", "ddl"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(into / "wheel")],
        capture_output=True, text=True, timeout=600, cwd=into,
    )
    if built.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{built.stderr[-3000:]}")
    (wheel,) = (into / "wheel").glob("cold_assets-*.whl")
    return wheel


def install(into: Path) -> Installed:
    wheel = build_wheel(into)
    venv = into / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"pip install of the wheel failed:\n{done.stderr[-3000:]}")
    purelib = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    (purelib / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(wheel, python, venv / "bin" / "cold-assets")
