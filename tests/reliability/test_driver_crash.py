"""Driver crash and resume: SIGKILL a process in the middle of a fit with a checkpoint directory, resume the fit in a
new process, and get exactly the uninterrupted run's factors and history (NMF and MaskedALS).

``launch`` (started at collection, ``@pytest.mark.background``) runs tests/reliability/_crash_child.py: two
crashing children (NMF, MaskedALS) each hang in their fit's callback after a checkpoint was written and are killed
with their JVM (SIGKILL to the process group), then one child resumes both fits and runs them uninterrupted.
The atomic-write tests below need no Spark.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _cluster import wait_for

from sparknmf.engine.checkpoint import LoopCheckpoint

CHILD = Path(__file__).with_name("_crash_child.py")
ROOT = Path(__file__).resolve().parents[2]


def launch(workdir):
    """Crash both fits, then resume; returns (resume result, workdir, checkpoint iterations after the crash)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    crashing = {kind: subprocess.Popen([sys.executable, str(CHILD), "crash", kind, str(workdir)], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
                for kind in ("nmf", "als")}
    iterations = {}
    try:
        for kind, child in crashing.items():
            wait_for(lambda: (workdir / f"ready-{kind}").exists() or child.poll() is not None, 600, f"{kind} fit")
            os.killpg(child.pid, signal.SIGKILL)  # the driver and its JVM die together, as in a real crash
            child.wait(timeout=60)
            state = LoopCheckpoint(workdir / kind, 1, {}).path
            iterations[kind] = int(np.load(state)["history"].size) if state.exists() else None
    finally:
        for child in crashing.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    done = subprocess.run([sys.executable, str(CHILD), "resume", str(workdir)], env=env, capture_output=True,
                          text=True, timeout=900)
    return done, workdir, iterations


@pytest.mark.background
def test_killed_fit_resumes_to_the_uninterrupted_result(background):
    done, workdir, iterations = background.result(timeout=1500)
    assert iterations == {"nmf": 3, "als": 4}, "the crashed fits did not leave the expected checkpoints"
    assert done.returncode == 0, done.stderr[-3000:]
    fits = np.load(workdir / "fits.npz", allow_pickle=False)
    for kind in ("nmf", "als"):
        for part in ("a", "b", "history"):
            np.testing.assert_array_equal(fits[f"{kind}_resumed_{part}"], fits[f"{kind}_uninterrupted_{part}"],
                                          err_msg=f"{kind}: resumed fit differs in {part}")


def _saved(tmp_path):
    checkpoint = LoopCheckpoint(tmp_path, 2, {"k": 2, "seed": 0})
    checkpoint.save(2, [3.0, 2.0], W=np.ones((3, 2)), Ht=np.zeros((4, 2)))
    return checkpoint


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint = _saved(tmp_path)

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is interrupted in the middle of the write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(4, [3.0, 2.0, 1.5, 1.2], W=np.full((3, 2), 7.0), Ht=np.zeros((4, 2)))
    iteration, history, arrays = checkpoint.load()
    assert iteration == 2 and history == [3.0, 2.0] and (arrays["W"] == 1).all()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"], "the temporary file was left behind"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other problem"])
def test_damaged_or_foreign_checkpoints_are_refused(tmp_path, damage):
    checkpoint = _saved(tmp_path)
    if damage == "truncate":
        checkpoint.path.write_bytes(checkpoint.path.read_bytes()[:100])
        message = "not a readable sparknmf checkpoint"
    elif damage == "garbage":
        checkpoint.path.write_bytes(b"\x80\x04not an npz at all")
        message = "not a readable sparknmf checkpoint"
    else:
        checkpoint = LoopCheckpoint(tmp_path, 2, {"k": 3, "seed": 0})
        message = r"written for a different problem \(differs in \['k'\]\)"
    with pytest.raises(ValueError, match=message):
        checkpoint.load()
