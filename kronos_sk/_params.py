"""Declarative parameter checks for the estimators, on scikit-learn's constraint tables.

An estimator lists each ``__init__`` parameter with its allowed values in
`_parameter_constraints` (intervals, string options, types, None), as scikit-learn's own
estimators do, and `fit` calls `validate_params`. Two things are added to scikit-learn's
check: booleans are refused where a number is expected (scikit-learn lets ``True`` pass as
the integer 1), and an old option name is answered with its new one.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import (Interval, InvalidParameterError, make_constraint,
                                             validate_parameter_constraints)


def positive_int(allow_none: bool = False) -> list:
    """Constraint list of an integer >= 1 (or None)."""
    return [Interval(Integral, 1, None, closed="left")] + ([None] if allow_none else [])


def positive_real() -> list:
    """Constraint list of a finite number > 0."""
    return [Interval(Real, 0, None, closed="neither")]


def validate_params(estimator: Any, constraints: dict[str, list],
                    renamed: dict[str, dict[str, str]] | None = None) -> None:
    """Check `estimator`'s parameters against `constraints`.

    Raises `InvalidParameterError` (a ValueError and TypeError) naming the parameter, what it
    accepts and the value given, e.g. "The 'n_samples' parameter of KronosForecaster must be
    an int in the range [1, inf). Got 0 instead."

    Parameters
    ----------
    estimator : object with ``get_params``
    constraints : dict
        Parameter name -> list of constraints, as in scikit-learn.
    renamed : dict or None
        Parameter name -> {old option: new option}; an old option is refused with a message
        that names the new one.
    """
    params = estimator.get_params(deep=False)
    caller = type(estimator).__name__
    for name, options in (renamed or {}).items():
        value = params.get(name)
        if isinstance(value, str) and value in options:
            raise InvalidParameterError(
                f"The {name!r} parameter of {caller}: {value!r} is now called "
                f"{options[value]!r}; pass {name}={options[value]!r}.")
    for name, value in params.items():
        allowed = constraints.get(name, [])
        numeric = [c for c in allowed if isinstance(c, Interval)]
        if isinstance(value, bool) and numeric and "boolean" not in allowed \
                and bool not in allowed:
            raise InvalidParameterError(
                f"The {name!r} parameter of {caller} must be {_describe(allowed)}. Got "
                f"{value!r} instead.")
    validate_parameter_constraints(constraints, params, caller_name=caller)


def _describe(allowed: list) -> str:
    texts = [str(make_constraint(c)) for c in allowed]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"


def probability_levels(levels: Any, name: str) -> list[float]:
    """`levels` as a list of distinct floats in [0, 1], else a one-line ValueError."""
    if isinstance(levels, (str, bytes)) or not np.iterable(levels):
        raise ValueError(f"{name} must be a sequence of numbers in [0, 1], got {levels!r}")
    values = []
    for level in levels:
        if isinstance(level, (bool, np.bool_)) or not isinstance(level, Real) \
                or not 0 <= level <= 1:
            raise ValueError(f"{name} must be numbers in [0, 1], got {level!r}")
        values.append(float(level))
    if not values or len(set(values)) < len(values):
        raise ValueError(f"{name} must be distinct numbers in [0, 1], got {list(levels)!r}")
    return values


def check_positive_int(value: Any, name: str) -> int:
    """`value` as an int >= 1 (booleans refused), else a one-line ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
