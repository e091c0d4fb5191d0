"""spark-submit entry point of the factorize job, kept for checkouts: the job is
:mod:`sparknmf.pipeline.jobs.factorize`, installed as the ``sparknmf-factorize`` command.

    python jobs/factorize.py CONF.toml ... [--set SECTION.KEY=VALUE ...] [--print-config] [--dry-run]

Imported (``import jobs.factorize``), this module is the package's module itself, so that its names
(``main``, ``SCHEMA``, ...) and any patch of them are the job's.
"""

import importlib
import sys

_JOB = "sparknmf.pipeline.jobs.factorize"

if __name__ == "__main__":
    sys.exit(importlib.import_module(_JOB).main())
else:
    sys.modules[__name__] = importlib.import_module(_JOB)
