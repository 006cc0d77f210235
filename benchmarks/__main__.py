"""``python -m benchmarks TASK [TASK ...] --config FILE`` (see benchmarks/suite/cli.py)."""

from benchmarks.suite.cli import main

raise SystemExit(main())
