"""The jobs, as installed commands and as ``spark-submit`` scripts.

Each module here is one job with ``main(argv=None) -> exit code``:

=============  ========================  ==========================================================
module         installed command         does
=============  ========================  ==========================================================
factorize      ``sparknmf-factorize``    NMF of a matrix (one fit, or the best of ``nrun`` runs)
rank_survey    ``sparknmf-rank-survey``  rank survey with its randomised baseline
topics         ``sparknmf-topics``       topics of a term-document matrix
recommend      ``sparknmf-recommend``    the scheduled recommendation refresh (train, gate, publish)
=============  ========================  ==========================================================

``pip install sparknmf`` installs the commands (``[project.scripts]``); each runs its job in this process
(an embedded ``local[*]`` session, or the ``[spark]`` master of its configuration).  ``spark-submit``
needs a ``.py`` file: give it the module's file, which ``python -m sparknmf.pipeline.jobs`` prints for
every job (the repository's ``jobs/<name>.py`` are thin copies of the same entry points).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["JOBS", "command", "script"]

JOBS = ("factorize", "rank_survey", "topics", "recommend")


def command(name: str) -> str:
    """The installed command of a job: ``rank_survey`` -> ``sparknmf-rank-survey``."""
    if name not in JOBS:
        raise ValueError(f"unknown job {name!r}; the jobs are {list(JOBS)}")
    return "sparknmf-" + name.replace("_", "-")


def script(name: str) -> Path:
    """The job module's file, the script to give ``spark-submit`` from an installed package."""
    if name not in JOBS:
        raise ValueError(f"unknown job {name!r}; the jobs are {list(JOBS)}")
    return Path(__file__).resolve().parent / f"{name}.py"
