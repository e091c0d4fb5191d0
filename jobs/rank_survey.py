"""spark-submit entry point of the rank_survey job, kept for checkouts: the job is
:mod:`sparknmf.pipeline.jobs.rank_survey`, installed as the ``sparknmf-rank-survey`` command.

    python jobs/rank_survey.py CONF.toml ... [--set SECTION.KEY=VALUE ...] [--print-config] [--dry-run]

Imported (``import jobs.rank_survey``), this module is the package's module itself, so that its names
(``main``, ``SCHEMA``, ...) and any patch of them are the job's.
"""

import importlib
import sys

_JOB = "sparknmf.pipeline.jobs.rank_survey"

if __name__ == "__main__":
    sys.exit(importlib.import_module(_JOB).main())
else:
    sys.modules[__name__] = importlib.import_module(_JOB)
