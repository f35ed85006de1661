"""``python -m patchwarden.agent``: the agent command line."""

from __future__ import annotations

import sys

from patchwarden.agent.cli import main

sys.exit(main())
