"""The ``patchwarden`` command line (see ``cli/main.py``)."""

from __future__ import annotations

import os
import sys
import warnings


def main() -> None:
    """Console-script entry point.

    Warnings of the libraries patchwarden uses are for their developers, not for the
    people running patchwarden: they are not printed, unless ``PATCHWARDEN_DEBUG`` is set
    or Python's own ``-W`` / ``PYTHONWARNINGS`` asks for them. The filter is in place
    before any command module (and its libraries) is imported.
    """
    if not sys.warnoptions and not os.environ.get("PATCHWARDEN_DEBUG"):
        warnings.simplefilter("ignore")
    # Imported only now, so that the filter above covers import-time warnings.
    from patchwarden.cli.main import main as run  # noqa: PLC0415

    run()
