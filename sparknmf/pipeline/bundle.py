"""Build the zip that ``spark-submit --py-files`` ships to the driver and executors.

    python -m sparknmf.pipeline.bundle [--output dist]      # -> dist/sparknmf-<version>.zip

The zip holds the ``sparknmf`` package's Python sources only (no caches,
tests or data), so ``import sparknmf`` works on every node from the zip;
numpy, scipy and pyarrow must be installed in the executors' Python
(``spark.pyspark.python``).  A zip is used rather than a wheel because
Spark puts only ``.zip``/``.egg``/``.py`` files given to ``--py-files`` on
the executors' ``sys.path``.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

__all__ = ["build_bundle"]


def build_bundle(output="dist") -> Path:
    """Write ``<output>/sparknmf-<version>.zip`` (sorted entries, fixed timestamps: the same sources give the
    same bytes); returns its path."""
    from sparknmf.version import __version__

    package = Path(__file__).resolve().parents[1]  # sparknmf/, this module being sparknmf/pipeline/bundle.py
    target = Path(output) / f"sparknmf-{__version__}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sources:
            name = path.relative_to(package.parent).as_posix()
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    tmp.replace(target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparknmf.pipeline.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="dist", help="folder for the zip (default: dist)")
    args = parser.parse_args(argv)
    path = build_bundle(args.output)
    print(path)
    print(f"spark-submit --py-files {path} jobs/factorize.py conf/factorize.toml", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
