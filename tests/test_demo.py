"""``python -m sparknmf.demo``: the first thing a new user runs.

It must end cleanly (exit code 0, no warning, no traceback, no Spark WARN/ERROR
log lines), stay short, and show results a person recognises: the planted
blocks recovered by ``NMF(k=3).fit(df)`` on Spark (purity 1.00) and the three
topics of the built-in sentences.  The demo runs in a subprocess started at
collection time (``background``), as a user would start it.
"""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 30


def launch(workdir):
    """Run the demo as a user would, in a fresh interpreter (started at collection time)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sparknmf.demo"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.background
def test_demo_runs_clean_short_and_recovers_the_planted_parts(background):
    done = background.result(timeout=660)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"the demo failed (exit code {done.returncode}):\n{output}"
    assert "Traceback" not in output, output
    assert "Warning" not in output, f"the demo printed a warning:\n{output}"
    spark_log = [line for line in output.splitlines() if re.search(r"\b(WARN|ERROR)\b", line)]
    assert not spark_log, "Spark log lines on the console:\n" + "\n".join(spark_log)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines (at most {MAX_LINES}):\n{output}"
    assert re.search(r"NMF\(k=3\)\.fit\(df\) on Spark: \d+ coordinates", done.stdout), done.stdout
    assert "planted block  " + "1" * 15 + "2" * 15 + "3" * 15 in done.stdout, done.stdout
    assert "NMF cluster    " + "A" * 15 + "B" * 15 + "C" * 15 in done.stdout, done.stdout
    assert "purity 1.00" in done.stdout, done.stdout
    for topic in ("space", "cooking", "football"):
        assert f"6 sentences, 6 about {topic}" in done.stdout, done.stdout


def test_corpus_topics_are_found_locally_without_warnings(capsys):
    from sparknmf import demo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        purity = demo.topics_of_corpus(None)
    assert purity == 1.0
    assert not caught, [str(w.message) for w in caught]
    out = capsys.readouterr().out
    assert re.search(r"topic \d: [a-z, ]*\btelescope\b", out), out
    assert re.search(r"topic \d: [a-z, ]*\bbake\b", out), out
    assert re.search(r"topic \d: [a-z, ]*\bstriker\b", out), out


def test_demo_help_names_the_verbose_flag(capsys):
    from sparknmf import demo

    with pytest.raises(SystemExit) as stop:
        demo.main(["--help"])
    assert stop.value.code == 0
    assert "--verbose" in capsys.readouterr().out
