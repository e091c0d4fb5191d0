"""scikit-learn habits on NMF: ``fit_transform``, sklearn's fitted attributes, new samples given as rows.

scikit-learn factorises X (n_samples × n_features) ≈ W (n_samples × k) ·
``components_`` (k × n_features); sparknmf factorises V (n×m) ≈ W (n×k) · H (k×m).
It is the same product: pass sklearn's X as V, and our W is sklearn's W, our
H its ``components_``.  Only the reading differs: R's NMF (and sparknmf's
docs) take the *columns* of V as the samples (H holds their coefficients,
W the basis), sklearn the *rows* (W holds their coefficients).  docs/sklearn.md
maps every name.

* :class:`SklearnEstimatorMixin` gives the ``NMF`` Estimator ``fit_transform``;
* :class:`SklearnModelMixin` gives ``NMFModel`` ``components_``,
  ``reconstruction_err_``, ``n_iter_``, ``n_components_``, ``n_features_in_`` and
  ``inverse_transform``;
* :func:`project` computes the NNLS coefficients of new samples given as
  columns (R's orientation, ``NMFModel.transform``'s default) or as rows
  (sklearn's ``NMF.transform``: ``samples="rows"``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from sparknmf.engine.ingest import is_frame
from sparknmf.engine.validation import as_matrix
from sparknmf.kernels.nnls import nnls_bpp

__all__ = ["SAMPLE_SIDES", "SklearnEstimatorMixin", "SklearnModelMixin", "project"]

SAMPLE_SIDES = ("columns", "rows")  # which side of a new matrix holds the samples


def project(model, X, samples: str = "columns") -> np.ndarray:
    """NNLS coefficients of new samples against a fitted model's factors.

    Parameters
    ----------
    model : NMFModel
    X : ndarray or sparse matrix
        ``samples="columns"``: shape (n, s), s new columns of V on the model's
        n rows (features); ``samples="rows"``: shape (s, m), s new rows of V on
        its m columns (scikit-learn's ``X_new``, n_samples × n_features).
    samples : {"columns", "rows"}

    Returns
    -------
    ndarray
        ``"columns"``: H_new of shape (k, s), ``argmin_{H ≥ 0} ‖X − W H‖_F``;
        ``"rows"``: W_new of shape (s, k), ``argmin_{W ≥ 0} ‖X − W H‖_F``
        (what scikit-learn's ``NMF.transform`` returns), both by exact NNLS
        (block principal pivoting).
    """
    if samples not in SAMPLE_SIDES:
        raise ValueError(f"NMFModel.transform: invalid samples={samples!r}; it must be one of {list(SAMPLE_SIDES)}")
    columns = samples == "columns"
    X = as_matrix(X, "NMFModel.project (input V)" if columns else "NMFModel.transform (input X_new)")
    basis = model.W if columns else model.H.T  # (d, k): the factor the new samples are expressed in
    d = basis.shape[0]
    if X.shape[0 if columns else 1] != d:
        if columns:
            raise ValueError(f"V_new must have {d} rows (features), got {X.shape[0]}")
        raise ValueError(f"X_new must have {d} columns (features, the columns of the fitted V), got {X.shape[1]}")
    data = X if columns else X.T  # (d, s)
    cross = np.asarray((data.T @ basis) if sp.issparse(data) else data.T @ basis).T  # (k, s)
    coef = nnls_bpp(basis.T @ basis, cross)
    return coef if columns else np.ascontiguousarray(coef.T)


class SklearnModelMixin:
    """scikit-learn's fitted attributes on ``NMFModel`` (sklearn's X is our V; samples are its rows)."""

    @property
    def components_(self) -> np.ndarray:
        """H (k×m): scikit-learn's ``components_`` (k × n_features)."""
        return self.H

    @property
    def n_components_(self) -> int:
        """k, the rank (scikit-learn's ``n_components_``)."""
        return self.rank

    @property
    def n_iter_(self) -> int:
        """Iterations performed (scikit-learn's ``n_iter_``; also :attr:`nIter`)."""
        return self.nIter

    @property
    def n_features_in_(self) -> int:
        """m, the columns of the fitted V (scikit-learn's features)."""
        return self.shape[1]

    @property
    def reconstruction_err_(self) -> float:
        """scikit-learn's ``reconstruction_err_``: ``sqrt(2 · loss)`` of the returned W, H.

        That is ``‖V − WH‖_F`` for the least-squares rules (``bpp``, ``hals``,
        ``lee``, ``snmf/*`` without their penalty; weighted fits: ``sqrt(Σ w (v − wh)²)``)
        and ``sqrt(2 · D(V‖WH))`` with the generalised KL divergence for
        ``brunet``, as scikit-learn computes it for ``beta_loss="kullback-leibler"``.
        """
        loss = self.result.loss
        if loss is None:
            raise ValueError("reconstruction_err_: this model was saved without its loss (before sparknmf "
                             "recorded it); refit to get it")
        return math.sqrt(2.0 * max(loss, 0.0))  # the loss is computed from Grams: clip rounding below 0

    def inverse_transform(self, W) -> np.ndarray:
        """``W @ H`` (p×m) from coefficients W (p×k): scikit-learn's ``inverse_transform``."""
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2 or W.shape[1] != self.rank:
            raise ValueError(f"inverse_transform: W must have shape (p, {self.rank}), got {W.shape}")
        return W @ self.H


class SklearnEstimatorMixin:
    """scikit-learn's ``fit_transform`` on the ``NMF`` Estimator, for numpy / scipy input."""

    def fit_transform(self, X, y=None, W=None, H=None) -> np.ndarray:
        """Fit on X and return W, as scikit-learn's ``NMF.fit_transform``.

        X is our V (n×m): its rows are scikit-learn's samples, so W (n×k)
        holds their coefficients; the fitted model is kept as ``model_`` and
        its ``components_`` (H, k×m), ``reconstruction_err_`` and ``n_iter_``
        are readable on the Estimator too, as on scikit-learn's.

        Parameters
        ----------
        X : ndarray or scipy sparse matrix of shape (n, m)
        y : ignored
            Present for scikit-learn's API.
        W : ndarray of shape (n, k), H : ndarray of shape (k, m), optional
            Starting factors (``init="custom"``, or ``init="auto"`` with both given).

        Returns
        -------
        W : ndarray of shape (n, k)
        """
        if is_frame(X):
            raise ValueError(f"{type(self).__name__}.fit_transform follows scikit-learn on numpy / scipy input "
                             "(rows are samples; it returns W); for a DataFrame use fit(df) and the model's "
                             "rowFactors / colFactors or transform(df)")
        self.model_ = self.fit(X) if W is None and H is None else self.fitWith(X, W0=W, H0=H)
        return self.model_.W

    def _fitted(self):
        model = getattr(self, "model_", None)
        if model is None:
            raise AttributeError(f"this {type(self).__name__} has no fitted model: call fit_transform first "
                                 "(or use the model that fit returns)")
        return model

    @property
    def components_(self) -> np.ndarray:
        """H (k×m) of the model fitted by :meth:`fit_transform`."""
        return self._fitted().components_

    @property
    def reconstruction_err_(self) -> float:
        """``reconstruction_err_`` of the model fitted by :meth:`fit_transform`."""
        return self._fitted().reconstruction_err_

    @property
    def n_iter_(self) -> int:
        """Iterations of the fit of :meth:`fit_transform`."""
        return self._fitted().n_iter_
