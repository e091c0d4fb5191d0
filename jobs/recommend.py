"""spark-submit entry point of the recommend job, kept for checkouts: the job is
:mod:`sparknmf.pipeline.jobs.recommend`, installed as the ``sparknmf-recommend`` command.

    python jobs/recommend.py CONF.toml ... [--set SECTION.KEY=VALUE ...] [--print-config] [--dry-run]

Imported (``import jobs.recommend``), this module is the package's module itself, so that its names
(``main``, ``SCHEMA``, ...) and any patch of them are the job's.
"""

import importlib
import sys

_JOB = "sparknmf.pipeline.jobs.recommend"

if __name__ == "__main__":
    sys.exit(importlib.import_module(_JOB).main())
else:
    sys.modules[__name__] = importlib.import_module(_JOB)
