"""The fit loop of :class:`~sparknmf.ratings.estimator.MaskedALS` and the block tasks it sends.

Each iteration solves every user's parameters given the items', then every
item's given the users' (one half-step each: exact ridge solves by rows,
:func:`~sparknmf.kernels.als.half_step`), then, with implicit feedback, takes a
few conjugate-gradient steps on the SVD++ vectors Y.  With ``implicitPrefs`` a half-step is the
all-pairs solve of :func:`~sparknmf.kernels.implicit.implicit_half_step`, given YᵀY of the other side,
computed here once per half-step and shipped to every block.  It stops after
``maxIter`` iterations or when the objective's relative decrease is at most
``tol``.

Each half-step runs one block task on every block of one copy of the ratings
(:meth:`~sparknmf.ratings.store.RatingBlocks.map_blocks`, layout in
:mod:`sparknmf.ratings.store`): the other side's parameters travel with the
task, every task solves the rows of its block and the new rows come back to
the driver.  The parameters stay on the driver between half-steps, so the plan
never grows and no checkpoint directory is needed.

Ratings with at most ``localLimit`` entries are fitted on the driver by the
same block tasks (``backend="auto"``), which skips Spark's per-job cost; so
are larger ratings on a local master while they fit the driver's limits
(:func:`~sparknmf.ratings.ingest.use_driver`).  The driver runs its blocks on
one thread per core.
"""

from __future__ import annotations

import logging
import secrets
import time
import warnings

import numpy as np
import pyarrow.compute as pc
import scipy.sparse as sp

from sparknmf.engine import codec
from sparknmf.engine.calls import Call, block_function, block_type
from sparknmf.engine.checkpoint import LoopCheckpoint
from sparknmf.errors import ConvergenceWarning, check_factors, check_objective
from sparknmf.kernels.als import (
    SideSpec,
    half_step,
    implicit_apply,
    implicit_offset,
    implicit_sums,
    implicit_system,
    predict,
)
from sparknmf.kernels.implicit import implicit_half_step, implicit_half_step_cg
from sparknmf.kernels.seeding import chunked_draw
from sparknmf.ratings.store import SIDES, other_side

__all__ = ["REMEDY", "STREAMS", "FitLoop", "implicit_prefs_options", "implicit_prefs_rows", "loop_fingerprint",
           "side_specs"]

logger = logging.getLogger("sparknmf")

REMEDY = ("Try a stronger regularization (regParam, biasRegParam, implicitRegParam), a lower rank, "
           "or check the ratings' scale.")
_CG_STEPS = 3  # conjugate-gradient steps per iteration for the implicit-feedback vectors
block_type(SideSpec)  # the block tasks' calls carry the sides' layouts (sparknmf.engine.calls)
_USER_STREAM, _ITEM_STREAM = 10, 11
STREAMS = {"user": _USER_STREAM, "item": _ITEM_STREAM}  # the generators of the initial parameters
# the Params that shape the iterates: a checkpoint resumes only with the same values
_TRAJECTORY_PARAMS = ("rank", "regParam", "biasRegParam", "regularization", "nonnegative", "biases", "timeBins",
                      "userDrift", "driftExponent", "implicitFeedback", "implicitRegParam", "initStd", "seed",
                      "weightCol", "timestampCol", "duplicates", "implicitPrefs", "alpha", "confidence", "epsilon",
                      "cgSteps")


def side_specs(est) -> dict:
    """The parameter layout of each side (:class:`~sparknmf.kernels.als.SideSpec`) for the Params of ``est``."""
    k, biases = est.getRank(), est.getBiases() and not est.getImplicitPrefs()
    timed = bool(est.getTimestampCol())
    user = SideSpec(k, biases, "drift" if timed and est.getUserDrift() else "none")
    bins = est.getTimeBins() if timed else 0
    item = SideSpec(k, biases, "bins" if bins else "none", bins)
    return {"user": user, "item": item}


def loop_fingerprint(est, blocks) -> dict:
    """What a loop checkpoint of ``est`` on ``blocks`` records of its problem: the ratings' shape, count and
    mean, and the Params that shape the iterates (a resume must match it)."""
    return {"shape": list(blocks.shape), "nnz": blocks.nnz, "mu": blocks.mu,
            **{name: est.getOrDefault(name) for name in _TRAJECTORY_PARAMS}}


def implicit_prefs_options(est) -> dict:
    """The implicit preference model's options of the row solves (:func:`implicit_prefs_rows`) for ``est``."""
    return dict(reg=est.getRegParam(), alpha=est.getAlpha(), confidence_kind=est.getConfidence(),
                epsilon=est.getEpsilon(), scaled=est.getRegularization() == "weighted",
                nonnegative=est.getNonnegative(), cg_steps=est.getCgSteps())


def implicit_prefs_rows(entries, Y, gram, init, options):
    """``(X, loss, penalty)`` of one block under the implicit preference model, for either placement.

    ``Y`` (rows × k): the other side's rows the block's ``entries.cols`` index; ``gram`` (k×k): YᵀY over
    **all** rows of the other side; ``init`` (b×k or None): the warm start; ``options`` as
    :func:`implicit_prefs_options` (``cg_steps`` > 0: that many conjugate-gradient steps, else the exact solve).
    """
    options = dict(options)
    steps = options.pop("cg_steps", 0)
    if steps:
        options.pop("nonnegative")
        return implicit_half_step_cg(entries.indptr, entries.cols, entries.ratings, Y, gram, steps=steps,
                                     weights=entries.weights, init=init, **options)
    return implicit_half_step(entries.indptr, entries.cols, entries.ratings, Y, gram, weights=entries.weights,
                              init=init, **options)


class FitLoop:
    """The alternating loop of one fit: user half-step, item half-step, implicit vectors.

    ``FitLoop(est, blocks, initial, callback).run(resume)`` fits the Params of
    ``est`` (a :class:`~sparknmf.ratings.estimator.MaskedALS`) on ``blocks``,
    warm-started from the model ``initial`` (or None), and returns the state a
    :class:`~sparknmf.ratings.model.MaskedALSModel` is made of.
    """

    def __init__(self, est, blocks, initial, callback):
        self.est, self.blocks, self.callback = est, blocks, callback
        self.specs = side_specs(est)
        self.k = est.getRank()
        self.prefs = est.getImplicitPrefs()  # the implicit preference model (Hu, Koren & Volinsky)
        self.implicit = est.getImplicitFeedback() and not self.prefs  # SVD++ terms
        self.mu = 0.0 if self.prefs else blocks.mu
        if self.prefs:
            self.options = implicit_prefs_options(est)
        else:
            self.options = dict(mu=blocks.mu, reg=est.getRegParam(), bias_reg=est.getBiasRegParam(),
                                scaled=est.getRegularization() == "weighted", nonnegative=est.getNonnegative())
        n, m = blocks.shape
        self.P = {side: self._initial(side, rows, stream, initial)
                  for side, rows, stream in (("user", n, _USER_STREAM), ("item", m, _ITEM_STREAM))}
        self.Z = np.zeros((n, self.k))
        self.Y = np.zeros((m, self.k))
        if initial is not None and self.implicit and initial.implicitVectors is not None:
            self.Y = _carry(initial.implicitVectors, initial.itemIds, blocks.item_ids, self.Y)
            self.Z = _carry(initial.implicitSums, initial.userIds, blocks.user_ids, self.Z)
            self.P["user"][:, : self.k] -= self.Z  # the stored user factors include z_u
        self.penalty = {"user": 0.0, "item": 0.0}

    def _initial(self, side, rows, stream, initial):
        spec = self.specs[side]
        P = np.zeros((rows, spec.width))
        draw = chunked_draw(rows, self.k, self.est.getSeed(), stream) * self.est.getInitStd()
        P[:, : self.k] = np.abs(draw) if self.est.getNonnegative() else draw
        if initial is not None:  # of the same widths (MaskedALS._check_initial)
            P = _carry(initial.parameters(side), initial.ids(side), self.blocks.ids(side), P)
        return P

    def _effective_user(self):
        if not self.implicit:
            return self.P["user"]
        P = self.P["user"].copy()
        P[:, : self.k] += self.Z
        return P

    def half_step(self, side):
        blocks, specs, options, k = self.blocks, self.specs, self.options, self.k
        other = other_side(side)
        P_other = self.P["item"] if side == "user" else self._effective_user()
        # warm start of the NNLS solver and of the conjugate-gradient steps
        own = [self.P[side]] if options["nonnegative"] or options.get("cg_steps") else []
        if self.prefs:  # YᵀY of the other side, over all its rows: computed once here, shipped to every block
            Y = P_other[:, :k]
            task = Call(_implicit_prefs_task, dict(options=options, gram=Y.T @ Y))
            table = blocks.map_blocks(side, task, "key int, x binary, loss double, penalty double", own=own,
                                      other=[P_other])
            self.P[side] = np.vstack([codec.decode(x) for x in table.column("x").to_pylist()])
            self.penalty[side] = float(np.sum(table.column("penalty").to_numpy()))
            return float(np.sum(table.column("loss").to_numpy()))
        implicit = self.implicit and side == "user"
        task = Call(_half_step_task, dict(spec=specs[side], other_spec=specs[other], options=options, k=k,
                                          implicit=implicit))
        table = blocks.map_blocks(side, task, "key int, x binary, z binary, loss double, penalty double", own=own,
                                  other=[P_other, self.Y] if implicit else [P_other])
        self.P[side] = np.vstack([codec.decode(x) for x in table.column("x").to_pylist()])
        if implicit:
            self.Z = np.vstack([codec.decode(z) for z in table.column("z").to_pylist()])
        self.penalty[side] = float(np.sum(table.column("penalty").to_numpy()))
        return float(np.sum(table.column("loss").to_numpy()))

    def implicit_products(self, vector, token):
        """Σ over user blocks of the Y problem's pieces: ``(rhs, A v)`` (m×k each); one pass.

        Each block's Grams do not change during one implicit step (``token``):
        they are computed on its first pass and kept in the block's scratch
        (where resident tasks and the local backend keep it between passes).
        """
        task = Call(_implicit_products_task, dict(specs=self.specs, mu=self.blocks.mu, k=self.k, token=token))
        table = self.blocks.map_blocks("user", task, "key int, rhs binary, product binary", own=[self.P["user"]],
                                       other=[self.P["item"], vector])
        rhs = sum(codec.decode(r) for r in table.column("rhs").to_pylist())
        return rhs, sum(codec.decode(p) for p in table.column("product").to_pylist())

    def implicit_step(self):
        """A few conjugate-gradient steps on the ridge problem of Y (kernels.ratings), warm-started."""
        lam = self.est.getImplicitRegParam()
        token = secrets.token_hex(8)  # unique across fits too: local blocks keep their scratch between fits
        rhs, AY = self.implicit_products(self.Y, token)
        r = rhs - (AY + lam * self.Y)
        p, rr = r.copy(), float(np.vdot(r, r))
        for _ in range(_CG_STEPS):
            if rr <= 1e-30:
                break
            _, Ap = self.implicit_products(p, token)
            Ap = Ap + lam * p
            alpha = rr / float(np.vdot(p, Ap))
            self.Y += alpha * p
            r -= alpha * Ap
            rr_new = float(np.vdot(r, r))
            p = r + (rr_new / rr) * p
            rr = rr_new

    def checkpoint(self):
        """The loop's :class:`~sparknmf.engine.checkpoint.LoopCheckpoint`, or None without ``checkpointDir``."""
        est = self.est
        if not est.getCheckpointDir():
            return None
        return LoopCheckpoint(est.getCheckpointDir(), est.getCheckpointInterval(), loop_fingerprint(est, self.blocks))

    def run(self, resume=False):
        est, blocks = self.est, self.blocks
        max_iter, tol = est.getMaxIter(), est.getTol()
        history, start, iteration, stop_reason = [], time.perf_counter(), 0, "max_iter"
        checkpoint = self.checkpoint()
        state = checkpoint.load() if checkpoint is not None and resume else None
        if state is not None:
            iteration, history, arrays = state
            self.P = {"user": arrays["user"], "item": arrays["item"]}
            self.Z, self.Y = arrays["Z"], arrays["Y"]
            logger.info("resuming from %s at iteration %d", checkpoint.path, iteration)
        while iteration < max_iter:
            iteration += 1
            for side in SIDES:
                with blocks.describe(f"sparknmf: ALS iter {iteration}, update {side}s"):
                    loss = self.half_step(side)
                check_factors("MaskedALS", iteration, REMEDY, {f"the {side} parameters": self.P[side]})
            objective = loss + self.penalty["user"] + self.penalty["item"]
            if self.implicit:
                objective += est.getImplicitRegParam() * float(np.vdot(self.Y, self.Y))
                with blocks.describe(f"sparknmf: ALS iter {iteration}, implicit vectors"):
                    self.implicit_step()
                check_factors("MaskedALS", iteration, REMEDY, {"the implicit vectors": self.Y})
            check_objective("MaskedALS", iteration, objective, history, REMEDY)
            history.append(objective)
            elapsed = time.perf_counter() - start
            logger.info("ALS iteration %d objective %.10g elapsed %.3fs", iteration, objective, elapsed)
            if checkpoint is not None and checkpoint.due(iteration):
                checkpoint.save(iteration, history, user=self.P["user"], item=self.P["item"], Z=self.Z, Y=self.Y)
            if self.callback is not None:
                self.callback(iteration, elapsed, objective)
            if len(history) >= 2 and abs(history[-2] - objective) <= tol * max(abs(history[-2]), 1e-300):
                stop_reason = "tol"
                break
        if self.implicit:  # the user factors of the final Y
            self.Z = self._implicit_sums()
        if stop_reason == "max_iter" and tol > 0 and max_iter > 0:
            warnings.warn(f"MaskedALS stopped at maxIter={max_iter} before the relative decrease reached tol={tol}",
                          ConvergenceWarning, stacklevel=4)
        return {
            "P": {"user": self._effective_user(), "item": self.P["item"]}, "Z": self.Z,
            "Y": self.Y if self.implicit else None, "specs": self.specs, "mu": self.mu, "implicitPrefs": self.prefs,
            "ids": {"user": blocks.user_ids, "item": blocks.item_ids}, "idTypes": dict(blocks.id_types),
            "seen": self._seen() if self.prefs else None, "context": blocks.context, "history": history,
            "nIter": iteration, "stopReason": stop_reason,
            "elapsed": time.perf_counter() - start,
        }

    def _seen(self):
        """The pairs with an event (n×m CSR of ones, float32), for the recommendations' filter."""
        table = self.blocks.map_blocks("user", Call(_seen_task, {"m": self.blocks.shape[1]}), "key int, seen binary")
        return sp.vstack([codec.decode(x) for x in table.column("seen").to_pylist()], format="csr")

    def _implicit_sums(self):
        table = self.blocks.map_blocks("user", Call(_implicit_sums_task, {}), "key int, z binary", other=[self.Y])
        return np.vstack([codec.decode(z) for z in table.column("z").to_pylist()])


# The block tasks of the loop (RatingBlocks.map_blocks): ``task(key, entries, scratch, own, others, **arguments)``
# -> one output row.  Registered, so that resident tasks receive them by name (sparknmf.engine.calls).
@block_function
def _half_step_task(key, entries, scratch, own, others, *, spec, other_spec, options, k, implicit):
    """A block's new rows of one side (given the other side's ``others[0]``), their data loss and penalty.

    With ``implicit`` (user side), ``others[1]`` are the implicit vectors Y:
    the block's users' sums z_u are added to the item factors' products.
    """
    P_o = others[0]
    offset = Z = None
    if implicit:
        Z = implicit_sums(entries, others[1])
        offset = implicit_offset(entries, Z, P_o[:, :k])
    X, loss, penalty = half_step(spec, other_spec, entries, P_o, init=own[0] if own else None, offset=offset,
                                 **options)
    return {"key": key, "x": codec.encode(X), "z": codec.encode(Z) if Z is not None else b"", "loss": loss,
            "penalty": penalty}


@block_function
def _implicit_prefs_task(key, entries, scratch, own, others, *, options, gram):
    """A block's new rows under the implicit preference model (all pairs), their loss and penalty.

    ``gram`` is YᵀY of the other side's factors ``others[0]`` over all its rows (the rows of ``others[0]``
    that the block does not refer to may be zeros: routed, see :meth:`RatingBlocks.map_blocks`).
    """
    X, loss, penalty = implicit_prefs_rows(entries, others[0], gram, own[0] if own else None, options)
    return {"key": key, "x": codec.encode(X), "loss": loss, "penalty": penalty}


@block_function
def _implicit_products_task(key, entries, scratch, own, others, *, specs, mu, k, token):
    """A user block's pieces of the Y problem: ``(rhs, A v)`` for ``others = (item parameters, v)``.

    The block's Grams are kept in its scratch for the passes of one implicit step (``token``).
    """
    P_item, v = others
    kept = scratch.get("implicit")
    if kept is None or kept[0] != token:
        residual = entries.ratings - predict(specs["user"], specs["item"], own[0], P_item, entries.rows, entries.cols,
                                             entries, mu)
        kept = scratch["implicit"] = (token, *implicit_system(entries, P_item[:, :k], residual))
    _, grams, rhs = kept
    return {"key": key, "rhs": codec.encode(rhs), "product": codec.encode(implicit_apply(entries, grams, v))}


@block_function
def _seen_task(key, entries, scratch, own, others, *, m):
    """A user block's event pairs as a CSR of ones (float32)."""
    ones = np.ones(entries.cols.shape[0], np.float32)
    b = entries.indptr.size - 1
    return {"key": key, "seen": codec.encode(sp.csr_matrix((ones, entries.cols, entries.indptr), shape=(b, m)))}


@block_function
def _implicit_sums_task(key, entries, scratch, own, others):
    """A user block's implicit sums z_u of the vectors ``others[0]``."""
    return {"key": key, "z": codec.encode(implicit_sums(entries, others[0]))}


def _carry(old, old_ids, new_ids, fresh):
    """Rows of ``fresh`` (new index order) with the rows of ``old`` copied for ids present in both."""
    position = pc.index_in(new_ids, value_set=old_ids)
    known = position.is_valid().to_numpy(zero_copy_only=False)
    position = pc.fill_null(position, -1).to_numpy(zero_copy_only=False)
    out = fresh.copy()
    out[known] = old[position[known]]
    return out
