"""Block calls (sparknmf.engine.calls): what resident tasks receive, encoded without pickle and decoded by name only."""

import json
import pickle

import numpy as np
import pytest

from sparknmf.engine import calls
from sparknmf.engine.block_tasks import _fused_run
from sparknmf.kernels.als import SideSpec
from sparknmf.kernels.updates import UPDATE_RULES, WEIGHTED_RULES, RuleParams
from sparknmf.ratings.fit import _half_step_task
from sparknmf.ratings.store import StepContext, _block_run


def _roundtrip(call):
    """Encode, copy every frame into a fresh mutable buffer (as a socket delivers it), decode."""
    return calls.decode([bytearray(memoryview(frame).tobytes()) for frame in calls.encode(call)])


def test_a_call_with_every_kind_of_argument_survives_the_trip(monkeypatch):
    monkeypatch.setattr(pickle, "loads", None)  # decoding never unpickles
    rng = np.random.default_rng(0)
    task = calls.Call(_half_step_task, dict(spec=SideSpec(rank=3, kind="bins", bins=4), other_spec=SideSpec(rank=3),
                                            options={"mu": 3.5, "reg": 0.1, "scaled": True}, k=3, implicit=False))
    context = StepContext(weighted=True, timed=True, bins=4, day_range=(1.5, 9.0), mean_days=rng.random(5))
    call = calls.Call(_block_run, dict(side="user", step=7, ctx=context, task=task, ddl="key int, x binary",
                                       own_parts={0: [b"abc"], 3: []}, others=(None, [rng.random((4, 2)).tobytes()]),
                                       size=9))
    back = _roundtrip(call)
    assert back.fn is _block_run and back.kwargs["task"].fn is _half_step_task
    assert back.kwargs["task"].kwargs == task.kwargs
    assert back.kwargs["own_parts"] == {0: [b"abc"], 3: []} and isinstance(back.kwargs["others"], tuple)
    assert back.kwargs["others"][1] == call.kwargs["others"][1]
    got = back.kwargs["ctx"]
    assert got.day_range == (1.5, 9.0) and got.bins == 4 and got.weighted
    np.testing.assert_array_equal(got.mean_days, context.mean_days)


def test_nmf_bodies_carry_their_rule_by_name_and_arrays_bit_for_bit():
    gram = np.asfortranarray(np.random.default_rng(1).random((3, 3)))
    for rule in (UPDATE_RULES["snmf/r"], WEIGHTED_RULES["bpp"]):
        call = calls.Call(_fused_run, dict(rule=rule, params=RuleParams(eta=2.0, sweeps={"W": 3, "H": 1}), side="W",
                                           gram_y=gram, update=True, xs=[None, b"x"], ys=[b"y"], with_carry=False))
        back = _roundtrip(call)
        assert back.kwargs["rule"] is rule and back.kwargs["params"] == call.kwargs["params"]
        np.testing.assert_array_equal(back.kwargs["gram_y"], gram)
        assert back.kwargs["gram_y"].dtype == gram.dtype and back.kwargs["xs"] == [None, b"x"]


def _evil(header):
    return [json.dumps(header).encode()]


@pytest.mark.parametrize("header, message", [
    ({"call": "os:system", "kwargs": {"dict": []}}, "'os:system' is not a registered block function"),
    ({"call": "sparknmf.engine.matrix:_assemble", "kwargs": {"dict": []}},
     "not a registered"),  # a function, not registered
    ({"call": "sparknmf.ratings.store:StepContext", "kwargs": {"dict": []}}, "is not a block function"),  # a type
    ({"call": "sparknmf.ratings.store:_block_run", "kwargs": {"type": "subprocess:Popen", "fields": {}}},
     "not a registered"),
    ({"call": "sparknmf.ratings.store:_block_run", "kwargs": {"pickle": "gASV"}}, "malformed block call"),
])
def test_a_request_naming_anything_unregistered_is_refused(header, message):
    with pytest.raises(ValueError, match=message):
        calls.decode(_evil(header))


def test_only_registered_functions_and_plain_data_can_be_sent():
    with pytest.raises(TypeError, match="not a registered block function"):
        calls.Call(print, {})
    with pytest.raises(TypeError, match="cannot carry a function"):
        calls.encode(calls.Call(_fused_run, {"rule": lambda: None}))
    with pytest.raises(TypeError, match="cannot carry a ndarray"):
        calls.encode(calls.Call(_fused_run, {"gram_y": np.array([object()])}))
