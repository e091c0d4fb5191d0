"""TOML configuration of the spark-submit jobs: a declared schema, layered files, ``--set`` overrides.

A job declares its options as sections of :class:`Option` (kind, default,
documentation, optional check); Estimator Params become a section directly
(:func:`params_section`), so defaults, documentation and range checks stay
where the library keeps them.  A job then reads any number of TOML files,
later files overriding earlier ones (``conf/local.toml conf/factorize.toml``),
and ``--set section.key=value`` overrides on top::

    conf = load_conf(FACTORIZE, ["conf/local.toml", "conf/factorize.toml"], ["nmf.k=10"])
    conf["nmf"]["k"]              # 10
    conf.source("nmf.k")          # "--set nmf.k=10"
    NMF(**conf.params("nmf"))     # snake_case keys -> the Estimator's camelCase Params

Every problem raises :class:`ConfError` naming the file (or the ``--set``
argument) and the key, before any Spark work: a missing or unreadable file,
TOML syntax, an unknown section or key (with the known ones), a wrong type,
a NaN or infinite number, a value outside its range or choices, a required key
given nowhere, an environment variable in a path that is not set.

``--set`` values are TOML values (``nmf.k=10``, ``survey.ks=[2, 3, 4]``,
``nmf.algorithm="hals"``); a value that is not valid TOML is taken as a plain
string, so ``--set input.path=/data/v.mtx`` needs no quotes.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["ConfError", "Option", "Conf", "REQUIRED", "params_section", "load_conf", "parse_override", "KINDS",
           "example_toml"]


class ConfError(ValueError):
    """A configuration problem; the message names the file (or --set) and the key."""


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()

KINDS = ("str", "path", "int", "float", "bool", "list[int]", "list[float]", "list[str]", "table")
_KIND_NAMES = {
    "str": "a string", "path": "a string (a path)", "int": "an integer", "float": "a number", "bool": "true or false",
    "list[int]": "an array of integers", "list[float]": "an array of numbers", "list[str]": "an array of strings",
    "table": "a table of name = string, number or boolean",
}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Option:
    """One configuration key.

    Parameters
    ----------
    kind : one of :data:`KINDS`
        ``path`` is a string in which ``${NAME}`` is replaced by the environment variable.
    default : value or :data:`REQUIRED`
    doc : str
    check : callable, optional
        ``check(value) -> bool`` with a ``describe()`` method (see :mod:`sparknmf.params`).
    choices : tuple, optional
        The allowed values (of every element, for a list).
    param : str, optional
        The Estimator Param this key sets (:meth:`Conf.params`).
    """

    kind: str
    default: object = REQUIRED
    doc: str = ""
    check: object = None
    choices: tuple | None = None
    param: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Option kind must be one of {KINDS}, got {self.kind!r}")


def _type_ok(kind: str, value) -> bool:
    def number(v, integer):
        return not isinstance(v, bool) and isinstance(v, int if integer else (int, float))

    if kind in ("str", "path"):
        return isinstance(value, str)
    if kind == "int":
        return number(value, True)
    if kind == "float":
        return number(value, False)
    if kind == "bool":
        return isinstance(value, bool)
    if kind.startswith("list["):
        inner = kind[5:-1]
        return isinstance(value, list) and all(
            isinstance(v, str) if inner == "str" else number(v, inner == "int") for v in value)
    return isinstance(value, dict) and all(isinstance(v, (str, int, float, bool)) for v in value.values())


def _describe(value) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__)
    return f"{value!r} ({kind})"


_FINITE = {"float": "a finite number", "list[float]": "an array of finite numbers",
           "table": "a table of name = string, finite number or boolean"}


def _non_finite(value) -> list:
    """The NaN and infinite numbers in a value (a number, an array's elements, a table's values)."""
    items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    return [v for v in items if isinstance(v, float) and not math.isfinite(v)]


def check_value(option: Option, key: str, value, source: str):
    """The value, converted (int -> float, ``${VAR}`` in paths); ConfError naming ``key`` and ``source``.

    A number is finite: NaN and ±inf (TOML ``nan``, ``inf``) are refused, as an array element or a
    table value too, unless the option's check admits that infinity explicitly (an
    :class:`~sparknmf.params.Interval` whose bound is ``math.inf``).
    """
    if not _type_ok(option.kind, value):
        raise ConfError(f"{source}: {key} must be {_KIND_NAMES[option.kind]}, got {_describe(value)}")
    if option.kind == "float":
        value = float(value)
    elif option.kind == "list[float]":
        value = [float(v) for v in value]
    elif option.kind == "path":
        def expand(match):
            name = match.group(1)
            if name not in os.environ:
                raise ConfError(f"{source}: {key} = {value!r} uses the environment variable {name}, which is not set")
            return os.environ[name]

        value = _ENV.sub(expand, value)
    non_finite = _non_finite(value)
    if non_finite and not (option.check is not None and option.kind == "float" and option.check(value)):
        allowed = option.check.describe(value) if option.check is not None else _FINITE[option.kind]
        raise ConfError(f"{source}: {key} must be {allowed}, got {value!r} (NaN and infinity are not allowed)")
    if option.choices is not None:
        bad = [v for v in value if v not in option.choices] if isinstance(value, list) else (
            [] if value in option.choices else [value])
        if bad:
            what = "contain only values among" if isinstance(value, list) else "be one of"
            raise ConfError(f"{source}: {key} must {what} {list(option.choices)}, got {value!r}")
    if option.check is not None and not option.check(value):
        raise ConfError(f"{source}: {key} must be {option.check.describe()}, got {value!r}")
    return value


def snake_case(name: str) -> str:
    """``maxIter`` -> ``max_iter``, ``numRowBlocks`` -> ``num_row_blocks``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# a job shows its progress through its log (--log-level INFO), not stdout; it writes factors, not transform columns
_NOT_CONFIGURED = ("verbose", "outputType")


def params_section(cls, *, only=None, exclude=(), defaults=None) -> dict:
    """A section of options from a pyspark.ml class's Params: snake_case keys, the Params' docs and checks.

    Parameters
    ----------
    cls : Params class (an Estimator such as :class:`~sparknmf.NMF`)
    only : iterable of Param names, optional
        Keep only these.
    exclude : iterable of Param names
        Leave these out (e.g. column Params a job sets itself).
    defaults : dict, optional
        Param name -> the job's default, where it differs from the class's.

    ``verbose`` and ``outputType`` are never keys (:data:`_NOT_CONFIGURED`).  Types come from each
    Param's type converter; range and choice checks from the class's
    ``_constraints`` table, checked when the file is read.
    """
    from pyspark.ml.param import TypeConverters as T

    kinds = {T.toInt: "int", T.toFloat: "float", T.toString: "str", T.toBoolean: "bool", T.toListFloat: "list[float]",
             T.toListInt: "list[int]", T.toListString: "list[str]"}
    instance = cls()
    constraints = getattr(cls, "_constraints", {})
    defaults = dict(defaults or {})
    section = {}
    for param in sorted(instance.params, key=lambda p: p.name):
        name = param.name
        if (only is not None and name not in only) or name in exclude or name in _NOT_CONFIGURED:
            continue
        kind = kinds.get(param.typeConverter)
        if kind is None:
            raise ValueError(f"params_section: {cls.__name__}.{name} has a type converter with no configuration kind")
        default = defaults.pop(name) if name in defaults else (
            instance.getOrDefault(param) if instance.hasDefault(param) else REQUIRED)
        section[snake_case(name)] = Option(kind, default, param.doc, check=constraints.get(name), param=name)
    if defaults:
        raise ValueError(f"params_section: {cls.__name__} has no Params {sorted(defaults)}")
    return section


@dataclass
class Conf:
    """A validated configuration: ``conf[section][key]``, where each value came from, the files read."""

    values: dict
    sources: dict
    files: list = field(default_factory=list)
    schema: dict = field(default_factory=dict)

    def __getitem__(self, section: str) -> dict:
        return self.values[section]

    def get(self, key: str):
        """The value of ``"section.key"``."""
        section, _, name = key.partition(".")
        return self.values[section][name]

    def source(self, key: str) -> str:
        """Where ``"section.key"`` was set: a file, a ``--set`` argument, or ``"default"``."""
        return self.sources.get(key, "default")

    def error(self, key: str, message: str) -> ConfError:
        """A ConfError about ``key`` that names its value and where it was set."""
        return ConfError(f"{self.source(key)}: {key} = {self.get(key)!r}: {message}")

    def params(self, section: str) -> dict:
        """The section's Estimator Params: ``{camelCase Param name: value}`` (see :func:`params_section`)."""
        options = self.schema[section]
        return {options[key].param: value for key, value in self.values[section].items() if options[key].param}

    def flat(self, *sections) -> dict:
        """``{"section.key": value}`` for the given sections (all by default), e.g. a report's parameter table."""
        names = sections or tuple(self.values)
        return {f"{section}.{key}": value for section in names for key, value in self.values[section].items()}

    def digest(self, *sections) -> str:
        """A short hash of the given sections' values: the same configuration gives the same digest."""
        import hashlib
        import json

        text = json.dumps({s: self.values[s] for s in (sections or sorted(self.values))}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """Every value (sections of keys), e.g. for a run summary."""
        return {section: dict(values) for section, values in self.values.items()}

    def to_toml(self, header: str = "") -> str:
        """Every value as a TOML document that :func:`load_conf` reads back to the same values.

        A key set by a file or ``--set`` carries a comment naming it; ``header`` (if any) opens the document as a
        comment.  Tables (``[spark] conf``) become sub-tables (``[spark.conf]``) after their section's keys.
        """
        lines = [f"# {line}" for line in header.splitlines()]
        for section, values in self.values.items():
            tables = []
            lines += ["", f"[{section}]"]
            for key, value in values.items():
                if isinstance(value, dict):
                    tables.append((key, value))
                    continue
                source = self.source(f"{section}.{key}")
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}" + ("" if source == "default" else
                                                                          f"  # {source}"))
            for key, table in tables:
                source = self.source(f"{section}.{key}")
                lines += ["", f"[{section}.{_toml_key(key)}]" + ("" if source == "default" else f"  # {source}")]
                lines += [f"{_toml_key(name)} = {_toml_value(value)}" for name, value in table.items()]
        return "\n".join(lines).lstrip("\n") + "\n"


def example_toml(schema: dict, header: str = "") -> str:
    """A documented configuration file for ``schema``: every key under its documentation, set to its default.

    A required key (no default) is left commented out, to be filled in (``# path = ...  # required``); so
    the file loads once those are set (in the file or with ``--set``).
    """
    import textwrap

    def doc(option, indent=""):
        text = option.doc or ""
        if option.choices is not None and "|" not in text and "one of" not in text:
            text += f" (one of {', '.join(map(str, option.choices))})"
        return [indent + "# " + line for line in textwrap.wrap(text, 108)] if text else []

    lines = [f"# {line}" for line in header.splitlines()]
    for section, options in schema.items():
        lines += ["", f"[{section}]"]
        tables = []
        for key, option in options.items():
            if option.kind == "table":
                tables.append((key, option))
                continue
            lines += doc(option)
            if option.default is REQUIRED:
                lines.append(f"# {_toml_key(key)} = ...  # required: {_KIND_NAMES[option.kind]}")
            else:
                try:
                    lines.append(f"{_toml_key(key)} = {_toml_value(option.default)}")
                except TypeError:
                    lines.append(f"# {_toml_key(key)} = ...  # no default that TOML can write")
        for key, option in tables:
            lines += [""] + doc(option) + [f"[{section}.{_toml_key(key)}]"]
            lines += [f"{_toml_key(name)} = {_toml_value(value)}" for name, value in (option.default or {}).items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value) -> str:
    """A TOML literal for a configuration value: string, boolean, integer, finite float or an array of them."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # JSON's escapes are TOML's; DEL must be escaped in TOML
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def parse_override(text: str):
    """``"section.key=value"`` -> ``("section", "key", value)``; the value parsed as TOML, else a string."""
    key, eq, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".", 1)
    if not eq or len(parts) != 2 or not all(parts):
        raise ConfError(f"--set {text}: expected SECTION.KEY=VALUE, e.g. --set als.rank=50")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts[0], parts[1], value


def _read_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfError(f"{path}: no such configuration file")
    try:
        # "utf-8-sig": a byte order mark (as some Windows editors write) is skipped, not a TOML syntax error
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise ConfError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfError(f"{path}: not valid UTF-8: {err}") from None
    except OSError as err:
        raise ConfError(f"{path}: cannot read the configuration file: {err.strerror or err}") from None


def _assign(schema, raw_values, sources, section, name, value, source):
    if section not in schema:
        raise ConfError(f"{source}: unknown section [{section}]; this job knows {sorted(schema)}")
    options = schema[section]
    if name not in options:
        table, _, entry = name.partition(".")
        if entry and table in options and options[table].kind == "table":
            current = dict(raw_values.get(section, {}).get(table, {}))
            current[entry] = value
            name, value = table, current
        else:
            raise ConfError(f"{source}: unknown key {section}.{name}; [{section}] has {sorted(options)}")
    raw_values.setdefault(section, {})[name] = check_value(options[name], f"{section}.{name}", value, source)
    sources[f"{section}.{name}"] = source


def load_conf(schema: dict, files=(), overrides=()) -> Conf:
    """Read, merge and check a job's configuration.

    Parameters
    ----------
    schema : dict
        ``{section: {key: Option}}``.
    files : sequence of paths
        TOML files, later ones overriding earlier ones key by key.
    overrides : sequence of str
        ``"section.key=value"`` (the ``--set`` arguments), applied last.

    Returns
    -------
    Conf with every key of the schema (defaults filled in).
    """
    raw_values: dict = {}
    sources: dict = {}
    for path in files:
        data = _read_file(path)
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfError(f"{path}: {section} = {table!r} is outside any section; "
                                f"put it under one of {sorted(schema)}")
            if section not in schema:
                raise ConfError(f"{path}: unknown section [{section}]; this job knows {sorted(schema)}")
            for name, value in table.items():
                if isinstance(value, dict) and schema[section].get(name, Option("str")).kind != "table":
                    raise ConfError(f"{path}: unknown section [{section}.{name}]; [{section}] has "
                                    f"{sorted(schema[section])}")
                _assign(schema, raw_values, sources, section, name, value, str(path))
    for text in overrides:
        section, name, value = parse_override(text)
        _assign(schema, raw_values, sources, section, name, value, f"--set {text}")
    values = {}
    for section, options in schema.items():
        values[section] = {}
        for name, option in options.items():
            if name in raw_values.get(section, {}):
                values[section][name] = raw_values[section][name]
            elif option.default is REQUIRED:
                where = ", ".join(map(str, files)) or "no configuration file"
                raise ConfError(f"{section}.{name} is required but set in none of: {where} "
                                f"(add it under [{section}] or pass --set {section}.{name}=...)")
            else:
                values[section][name] = option.default
    return Conf(values, sources, [str(f) for f in files], schema)
