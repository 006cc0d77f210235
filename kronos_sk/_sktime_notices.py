"""sktime 1.2's notice that the default of the ``remember_data`` config will change.

sktime prints it from `BaseForecaster.__init__` for every forecaster built, clones included.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

REMEMBER_DATA_NOTICE = "The default of config ``remember_data``"


@contextmanager
def no_remember_data_notice() -> Iterator[None]:
    """Ignore the notice inside the block (the forecasters here set remember_data explicitly)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(REMEMBER_DATA_NOTICE),
                                category=FutureWarning)
        yield
