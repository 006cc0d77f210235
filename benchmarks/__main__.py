"""``python -m benchmarks price|volatility|generation|investment|all --config FILE``."""

from benchmarks.suite.cli import main

raise SystemExit(main())
