"""spark-submit entry points of a checkout: ``jobs/<name>.py``, each the job :mod:`sparknmf.pipeline.jobs.<name>`.

Run one as a script (``python jobs/factorize.py conf/factorize.toml`` or through ``spark-submit``), or
import it from the repository root (``jobs.factorize.main([...])``).  An installed package has the same
jobs as commands (``sparknmf-factorize``, ...) and ``python -m sparknmf.pipeline.jobs`` prints the files to
give ``spark-submit``.
"""
