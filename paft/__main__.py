"""`python -m paft ...`, as the `paft` console script."""

from paft.cli import entry

entry()
