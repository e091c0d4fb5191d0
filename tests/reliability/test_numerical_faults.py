"""Numerical faults: NaN, infinities or divergence stop a fit with a ModelFitError naming the iteration and a remedy
(never NaN factors returned), and zero rows / columns of V or dead components end as documented (README,
"Bad input" and "Reliability")."""

import warnings

import numpy as np
import pyarrow as pa
import pytest

from sparknmf import MaskedALS, ModelFitError, nmf
from sparknmf.datasets import planted_nmf, planted_ratings
from sparknmf.decomposition.factorize import factorize
from sparknmf.engine.local import LocalMatrix
from sparknmf.engine.validation import as_matrix
from sparknmf.kernels.updates import EPS

pytestmark = pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")

ALGORITHMS = ["bpp", "hals", "lee", "brunet", "snmf/r", "snmf/l"]


class _Faulty(LocalMatrix):
    """V on the driver whose W half-step of iteration ``at`` (and later) returns ``fault(W)``."""

    def __init__(self, V, at, fault):
        super().__init__(V)
        self.at, self.fault, self.w_steps = at, fault, 0

    def half_step(self, side, rule, params, X, Y, gram_y, **kwargs):
        X_new, gram, data, carry = super().half_step(side, rule, params, X, Y, gram_y, **kwargs)
        if side == "W":
            self.w_steps += 1
            if self.w_steps >= self.at:
                X_new = self.fault(X_new)
                gram = rule.statistic.gram(X_new)
        return X_new, gram, data, carry


def _nan(W):
    W = W.copy()
    W[1, 0] = np.nan
    return W


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("fault, problem", [(_nan, r"NaN or infinite values in W \(its Gram\)"),
                                            (lambda W: W * 1e4, "the objective diverged to")])
def test_nmf_stops_at_the_faulty_iteration_with_a_remedy(algorithm, fault, problem):
    V = as_matrix(planted_nmf(20, 15, 3, noise=0.1, seed=0)[0])
    with pytest.raises(ModelFitError, match=rf"NMF: {problem}.* at iteration 3; the fit was stopped\. Try a smaller k, "
                                            r"a stronger regularization"):
        factorize(_Faulty(V, 3, fault), 3, algorithm=algorithm, max_iter=10, tol=0)


def test_nmf_overflow_in_float32_is_reported_not_returned():
    V = np.full((40, 30), 1e37)
    with pytest.raises(ModelFitError, match=r"NaN or infinite objective \((inf|nan)\) at iteration 0"):
        nmf(V, 2, dtype="float32", max_iter=3)


@pytest.fixture(scope="module")
def ratings(spark):
    return spark.createDataFrame(planted_ratings(15, 12, 2, density=0.5, seed=3)[0]).cache()


@pytest.mark.spark
def test_als_nan_mid_fit_stops_with_a_remedy(spark, ratings, monkeypatch):
    from sparknmf.ratings.fit import FitLoop as _Fit

    calls = []
    real = _Fit.half_step

    def corrupt_third_item_step(self, side):
        loss = real(self, side)
        calls.append(side)
        if calls.count("item") == 3:
            self.P["item"] = self.P["item"].copy()
            self.P["item"][0, 0] = np.inf
        return loss

    monkeypatch.setattr(_Fit, "half_step", corrupt_third_item_step)
    est = MaskedALS(rank=2, implicitFeedback=False, maxIter=6, backend="local")
    with pytest.raises(ModelFitError, match=r"MaskedALS: NaN or infinite values in the item parameters at iteration 3; "
                                            r"the fit was stopped\. Try a stronger regularization \(regParam"):
        est.fit(ratings)


@pytest.mark.spark
def test_als_overflowing_ratings_are_reported_not_returned(spark):
    table = planted_ratings(10, 8, 2, density=0.5, seed=4)[0]
    huge = table.set_column(2, "rating", pa.array(table.column("rating").to_numpy() * 1e160))
    with pytest.raises(ModelFitError, match="MaskedALS: NaN or infinite .* at iteration 1; the fit was stopped"):
        MaskedALS(rank=2, maxIter=3, backend="local").fit(spark.createDataFrame(huge))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_zero_rows_and_columns_of_v_give_documented_factors(algorithm):
    V = planted_nmf(12, 10, 2, seed=5)[0]
    V[3], V[:, 7] = 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nmf(V, 2, algorithm=algorithm, max_iter=200)
    floor = 0.0 if algorithm in ("bpp", "snmf/r", "snmf/l") else EPS
    assert np.isfinite(fit.W).all() and np.isfinite(fit.H).all()
    assert (fit.W[3] <= floor).all() and (fit.H[:, 7] <= floor).all()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_more_components_than_the_rank_leaves_finite_factors(algorithm):
    """k above the rank of V: extra components may die (zero columns of W, zero rows of H); nothing breaks."""
    V = planted_nmf(12, 10, 2, seed=6)[0]
    fit = nmf(V, 5, algorithm=algorithm, max_iter=300, tol=0)
    assert np.isfinite(fit.W).all() and np.isfinite(fit.H).all() and (fit.W >= 0).all() and (fit.H >= 0).all()
    assert np.isfinite(fit.history).all() and fit.objective <= fit.history[0]
