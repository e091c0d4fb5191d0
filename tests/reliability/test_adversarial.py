"""Adversarial inputs (issue 21): each was a wrong answer returned without error, or a raw Spark/Arrow/Python
error; each must now be a ValueError / InvalidInputError naming the parameter, column or file, the value and
what is allowed -- before any Spark job when the problem is visible without reading the data.

docs/reliability.md, "Adversarial inputs", has the table (input -> before -> now).
"""

import contextlib
import importlib
import math
import uuid

import numpy as np
import pytest

from sparknmf import NMF, MaskedALS
from sparknmf.params import Interval
from sparknmf.pipeline.jobconf import ConfError, Option, load_conf

pytestmark = [pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")]


@contextlib.contextmanager
def spark_jobs(spark):
    """Collects the descriptions of the Spark jobs started inside the block (its own job group)."""
    sc = spark.sparkContext
    group = f"adversarial-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "adversarial input")
    descriptions = []
    try:
        yield descriptions
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        descriptions.extend(sc.statusTracker().getJobIdsForGroup(group))


def recommend_job():
    return importlib.import_module("jobs.recommend")


# ------------------------------------------------------------------------ 1. NaN / inf Params and conf keys
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_interval_refuses_nan_and_infinity(value):
    assert not Interval(0)(value) and not Interval()(value) and not Interval(0, 1)(value)
    assert Interval(0)(0.0) and Interval(0, 1)(1) and Interval(integer=True)(10**400)
    assert Interval(0, math.inf)(math.inf) and not Interval(0, math.inf)(math.nan)  # an explicit infinite bound
    assert Interval(0).describe(value) == "a finite number >= 0" and Interval(0).describe(-1.0) == "a number >= 0"


@pytest.mark.parametrize("params, match", [
    ({"tol": math.nan}, r"MaskedALS: invalid tol=nan; it must be a finite number >= 0"),
    ({"regParam": math.inf}, r"MaskedALS: invalid regParam=inf; it must be a finite number >= 0"),
    ({"initStd": math.nan}, r"MaskedALS: invalid initStd=nan; it must be a finite number > 0"),
    ({"driftExponent": -math.inf}, r"invalid driftExponent=-inf; it must be a finite number >= 0"),
])
def test_nan_and_infinite_als_params_are_refused_before_any_job(params, match):
    with pytest.raises(ValueError, match=match):
        MaskedALS(**params).fit(None)  # the Params are checked before the data is looked at


@pytest.mark.parametrize("params, match", [
    ({"tol": math.nan}, r"NMF: invalid tol=nan; it must be a finite number >= 0"),
    ({"eta": math.nan}, r"NMF: invalid eta=nan; it must be a finite number"),
    ({"timeLimit": math.inf}, r"NMF: invalid timeLimit=inf; it must be a finite number >= 0"),
])
def test_nan_and_infinite_nmf_params_are_refused(params, match):
    with pytest.raises(ValueError, match=match):
        NMF(k=1, maxIter=1, **params).fit(np.ones((2, 2)))


@pytest.mark.parametrize("override, message", [
    ("gate.rmse_margin=nan", "gate.rmse_margin must be a finite number >= 0, got nan"),
    ("gate.ndcg_margin=nan", "gate.ndcg_margin must be a finite number >= 0, got nan"),
    ("gate.rmse_margin=inf", "gate.rmse_margin must be a finite number >= 0, got inf"),
    ("holdout.relevant=nan", "holdout.relevant must be a finite number, got nan"),
    ("als.tol=nan", "als.tol must be a finite number >= 0, got nan"),
    ("als.rating_range=[1.0, nan]", "als.rating_range must be an array of finite numbers, got [1.0, nan]"),
])
def test_recommend_job_refuses_nan_margins_before_any_work(tmp_path, capsys, override, message):
    """A NaN margin disabled the metric gate and a worse model was published with exit 0."""
    (tmp_path / "ratings.parquet").mkdir()
    path = tmp_path / "r.toml"
    path.write_text(f'[input]\npath = "{tmp_path / "ratings.parquet"}"\n[publish]\nroot = "{tmp_path / "pub"}"\n')
    assert recommend_job().main([str(path), "--set", override]) == 2  # EXIT_INVALID: the configuration's code
    assert f"--set {override}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "pub").exists()


def test_nan_margin_in_a_conf_file_is_refused(tmp_path):
    schema = recommend_job().SCHEMA
    path = tmp_path / "r.toml"
    path.write_text('[input]\npath = "x"\n[publish]\nroot = "p"\n[gate]\nrmse_margin = nan\n')
    with pytest.raises(ConfError, match=rf"{path}: gate.rmse_margin must be a finite number >= 0, got nan"):
        load_conf(schema, [path])
    schema = {"s": {"x": Option("float", 0.0, check=Interval(0, math.inf)), "t": Option("table", {})}}
    assert load_conf(schema, [], ["s.x=inf"])["s"]["x"] == math.inf  # an infinite bound admits infinity
    with pytest.raises(ConfError, match=r"s.x must be a finite number >= 0 and <= inf, got nan"):
        load_conf(schema, [], ["s.x=nan"])
    with pytest.raises(ConfError, match=r"s.t must be a table of name = string, finite number or boolean"):
        load_conf(schema, [], ["s.t.y=-inf"])


def test_utf8_byte_order_mark_in_a_conf_file_is_skipped(tmp_path):
    """A BOM (Windows editors) was a TOML syntax error at line 1, column 1."""
    path = tmp_path / "r.toml"
    path.write_bytes('\ufeff[s]\nx = 2.5\n'.encode())
    assert load_conf({"s": {"x": Option("float", 0.0)}}, [path])["s"]["x"] == 2.5
    path.write_bytes(b"\xef\xbb\xbf[s]\nx = \xe9\n")
    with pytest.raises(ConfError, match=rf"{path}: not valid UTF-8"):
        load_conf({"s": {"x": Option("float", 0.0)}}, [path])
