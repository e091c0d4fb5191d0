"""Block functions as data: a registered function and its arguments, sent to resident tasks without pickle.

A :class:`Call` is a module function of sparknmf registered with
:func:`block_function` and its keyword arguments.  It is called like the
closure it replaces (``call(batches)`` as a ``mapInArrow`` body,
``call(key, entries, ...)`` as a block task), Spark pickles it for its own
jobs as it pickles any function, and :func:`encode` turns it into a JSON
header plus raw buffers for the resident tasks (:mod:`sparknmf.engine.resident`),
which :func:`decode` reads back without ever unpickling: a name resolves
only to a registered function or constant, arguments are plain values,
arrays and bytes, and a few registered dataclasses.

Values an argument may hold: None, bool, int, float, str; lists, tuples and
dicts of values; numeric numpy arrays (raw bytes, dtype and shape); bytes and
other buffers; registered dataclasses (:func:`block_type`); registered
constants (:func:`block_constant`, e.g. the NMF update rules, which hold
functions); and nested calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
from dataclasses import dataclass

import numpy as np

__all__ = ["Call", "block_constant", "block_function", "block_type", "decode", "encode"]

_REGISTRY = {}  # name -> registered function, dataclass or constant
_NAMES = {}  # id(registered constant) -> name


def _name(obj) -> str:
    return f"{getattr(obj, '__module__', None)}:{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def block_function(fn):
    """Decorator: ``fn`` (a module-level function) may be named in a :class:`Call` sent to a task."""
    _REGISTRY[_name(fn)] = fn
    return fn


def block_type(cls):
    """Decorator: instances of the dataclass ``cls`` may be arguments (sent as their fields)."""
    _REGISTRY[_name(cls)] = cls
    return cls


def block_constant(module: str, name: str, value):
    """Register ``value`` as an argument sent by ``name``; ``module`` (the caller's ``__name__``) registers it."""
    key = f"{module}:{name}"
    _REGISTRY[key], _NAMES[id(value)] = value, key
    return value


@dataclass(frozen=True)
class Call:
    """``fn(*args, **kwargs)`` when called with ``args``: a registered block function and its arguments."""

    fn: object
    kwargs: dict

    def __post_init__(self):
        if _REGISTRY.get(_name(self.fn)) is not self.fn:
            raise TypeError(f"{_name(self.fn)} is not a registered block function "
                            "(sparknmf.engine.calls.block_function)")

    def __call__(self, *args):
        return self.fn(*args, **self.kwargs)


def encode(call: Call) -> list:
    """``[header, *buffers]``: the call as a JSON header (bytes) and the raw buffers it refers to."""
    buffers = []
    header = json.dumps(_tree(call, buffers)).encode()
    return [header, *buffers]


def decode(frames) -> Call:
    """Inverse of :func:`encode`; raises ValueError on a name that is not registered."""
    header, *buffers = frames
    return _value(json.loads(bytes(header)), buffers)


def _tree(value, buffers):
    """``value`` as a JSON tree, its buffers appended to ``buffers``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Call):
        return {"call": _name(value.fn), "kwargs": _tree(value.kwargs, buffers)}
    if id(value) in _NAMES:
        return {"constant": _NAMES[id(value)]}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        buffers.append(np.ascontiguousarray(value).data)
        return {"array": len(buffers) - 1, "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, (bytes, bytearray, memoryview)) or hasattr(value, "to_pybytes"):
        buffers.append(value)
        return {"bytes": len(buffers) - 1}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [_tree(v, buffers) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_tree(k, buffers), _tree(v, buffers)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and _REGISTRY.get(_name(type(value))) is type(value):
        fields = {f.name: _tree(getattr(value, f.name), buffers) for f in dataclasses.fields(value)}
        return {"type": _name(type(value)), "fields": fields}
    raise TypeError(f"a block call cannot carry a {type(value).__name__}")


def _registered(name: str):
    if name not in _REGISTRY and name.startswith("sparknmf."):
        with contextlib.suppress(ImportError, ValueError):  # a sparknmf module registers its names when imported
            importlib.import_module(name.partition(":")[0])
    if name not in _REGISTRY:
        raise ValueError(f"{name!r} is not a registered block function, type or constant")
    return _REGISTRY[name]


def _value(tree, buffers):
    """Inverse of :func:`_tree`."""
    if not isinstance(tree, dict):
        return tree
    if "call" in tree:
        fn = _registered(tree["call"])
        if not callable(fn) or isinstance(fn, type):
            raise ValueError(f"{tree['call']!r} is not a block function")
        return Call(fn, _value(tree["kwargs"], buffers))
    if "constant" in tree:
        return _registered(tree["constant"])
    if "array" in tree:
        return np.frombuffer(buffers[tree["array"]], np.dtype(tree["dtype"])).reshape(tree["shape"])
    if "bytes" in tree:
        return buffers[tree["bytes"]]
    if "list" in tree or "tuple" in tree:
        items = [_value(v, buffers) for v in tree.get("list", tree.get("tuple"))]
        return items if "list" in tree else tuple(items)
    if "dict" in tree:
        return {_value(k, buffers): _value(v, buffers) for k, v in tree["dict"]}
    if "type" in tree:
        cls = _registered(tree["type"])
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ValueError(f"{tree['type']!r} is not a block type")
        return cls(**{k: _value(v, buffers) for k, v in tree["fields"].items()})
    raise ValueError(f"malformed block call: {sorted(tree)}")
