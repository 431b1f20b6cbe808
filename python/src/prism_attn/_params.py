"""Run-time method parameters: prism_params from Python keywords.

The library takes the method's settings and the head counts at launch
(prism_params in prism_batch, include/prism.h), so thresholds, the band
temperatures, the forced blocks and the softmax scale change per call on
the same plan and kernels, with no compile.  A call's settings travel as
a tuple of the nine values of ``FIELDS`` (the C struct's method fields:
the selection's, then the softmax scale; the head counts come from the
tensors), and the launch path keys its prepared C structs by that tuple.

The custom ops take a call's settings as one int, a settings id
(``settings_id``): each distinct tuple is checked once and numbered, and
its id stays valid for the life of the process, so a compiled graph or a
captured CUDA graph can hold it as a constant.  Id 0 stands for the
kernel's own defaults.  One int argument instead of nine scalars keeps
the dispatcher's boxing of an op call small.
"""

from __future__ import annotations

import numbers
import threading
from typing import Any, Iterable, Mapping, Optional, Tuple

from . import _lib

# prism_params' method fields, in the order of the struct and of the ops
FIELDS = ("threshold_high", "threshold_low", "calibrate", "temp_high",
          "temp_low", "force_sink", "force_recent", "recent_blocks",
          "softmax_scale")
_INDEX = {name: i for i, name in enumerate(FIELDS)}
_BOOLS = frozenset(("calibrate", "force_sink", "force_recent"))
_INTS = frozenset(("recent_blocks",))
# shorthands that set both bands
ALIASES = {"threshold": ("threshold_high", "threshold_low"),
           "temp": ("temp_high", "temp_low")}
# what each call uses: the selection (estimate), the attention (sparse)
SELECTION = frozenset(FIELDS[:-1]) | {"threshold", "temp"}
ATTENTION = frozenset(("softmax_scale",))
ALL = SELECTION | ATTENTION
ATTENTION_INDEX = _INDEX["softmax_scale"]

Values = Tuple[float, float, bool, float, float, bool, bool, int, float]


def defaults(cfg: _lib.Config) -> Values:
    """A config's values (softmax_scale 0: 1/sqrt(head_dim)), as the
    library's prism_params_init_from_config gives them."""
    return (float(cfg.threshold_high), float(cfg.threshold_low),
            bool(cfg.calibrate), float(cfg.temp_high), float(cfg.temp_low),
            bool(cfg.force_sink), bool(cfg.force_recent),
            int(cfg.recent_blocks), 0.0)


def _names(allowed: Iterable[str]) -> str:
    return ", ".join(sorted(allowed))


# name -> (slots in a values tuple, whether the value is a bool)
_SLOTS = {**{n: ((i,), bool if n in _BOOLS else int if n in _INTS else float)
             for i, n in enumerate(FIELDS)},
          **{a: (tuple(_INDEX[f] for f in fs), float)
             for a, fs in ALIASES.items()}}


def resolve(base: Values, given: Mapping[str, Any],
            mapping: Optional[Mapping[str, Any]], allowed: frozenset,
            call: str) -> Values:
    """base with the given settings (keywords and/or a ``params``
    mapping) in place.  TypeError for an unknown name, a name given twice
    or a value of the wrong type; the library checks the ranges when a
    launch first runs the values (``struct``)."""
    if mapping:
        if not isinstance(mapping, Mapping):
            raise TypeError(f"{call}: params must be a mapping of method "
                            f"parameters, not {type(mapping).__name__}")
        twice = set(mapping) & set(given)
        if twice:
            raise TypeError(f"{call}: {_names(twice)} given both as a "
                            "keyword and in params")
        given = {**mapping, **given}
    out = list(base)
    for name, value in given.items():
        if name not in allowed:
            what = ("the method parameters are" if allowed is ALL else
                    f"{call} takes")
            raise TypeError(f"{call}: unknown method parameter {name!r}; "
                            f"{what} {_names(allowed)}")
        slots, kind = _SLOTS[name]
        if kind is bool:
            if value is not True and value is not False:
                value = _as_bool(name, value)
        elif kind is int:
            value = _as_int(name, value)
        elif type(value) is not float:
            value = _as_float(name, value)
        for i in slots:
            out[i] = value
    if len(given) > 1:
        for alias, fields in ALIASES.items():
            if alias in given and any(f in given for f in fields):
                raise TypeError(f"{call}: give {alias} or "
                                f"{' / '.join(fields)}, not both")
    return tuple(out)  # type: ignore[return-value]


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, not {value!r}")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not "
                        f"{type(value).__name__} {value!r}")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not "
                        f"{type(value).__name__} {value!r}")
    return float(value)


def struct(values: Values, q_heads: int, kv_heads: int) -> _lib.Params:
    """The checked prism_params of values and head counts; ValueError
    with the library's message ("params.FIELD VALUE ...") when a value is
    out of range.  (Under torch.compile the check runs when the compiled
    graph first runs the op with those values.)"""
    fields = dict(zip(FIELDS, values))
    p = _lib.Params(**fields, q_heads=q_heads, kv_heads=kv_heads)
    err = _lib.err_buf()
    st = _lib.lib().prism_params_validate(p, err, len(err))
    if st != _lib.OK:
        raise ValueError(err.value.decode(errors="replace"))
    return p


# --- settings ids: the custom ops' params_id ----------------------------------------
_ids_lock = threading.Lock()
_id_of: dict = {}               # values -> id
_values_of: dict = {0: None}    # id -> values; 0: the kernel's defaults


def settings_id(values: Values) -> int:
    """The settings id of a values tuple (``resolve``'s): made on first
    use, after the library's range check (ValueError as ``struct``; the
    head counts are each call's and are checked at launch), and the same
    int for equal tuples from then on.  Ids are never reused or dropped:
    compiled graphs hold them."""
    pid = _id_of.get(values)
    if pid is not None:
        return pid
    struct(values, 1, 1)
    with _ids_lock:
        pid = _id_of.get(values)
        if pid is None:
            pid = len(_values_of)
            _values_of[pid] = values
            _id_of[values] = pid
    return pid


def settings(pid: int) -> Optional[Values]:
    """The values of a settings id; None for 0 (the kernel's defaults).
    ValueError for an id ``settings_id`` did not give."""
    try:
        return _values_of[pid]
    except (KeyError, TypeError):
        raise ValueError(f"params_id {pid!r} is not a settings id: pass 0 "
                         "(the kernel's defaults) or one from "
                         "Kernel.params_id()") from None


def describe(values: Values) -> dict:
    """The values as a dict of FIELDS (softmax_scale 0.0: the default)."""
    return dict(zip(FIELDS, values))
