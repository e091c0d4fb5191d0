"""spark-submit entry points: ``jobs/<name>.py`` files, each with ``main(argv) -> exit code``.

Run one as a script (``python jobs/factorize.py conf/factorize.toml`` or through
``spark-submit``), or import it from the repository root (``jobs.factorize.main([...])``).
"""
