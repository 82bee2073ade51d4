"""`python -m paft_core.merging SPEC [--out DIR]`: the merge stage (paft_core.merging.main)."""

from paft_core import command, merging

command.stage_main("paft_core.merging", merging.ABOUT, merging.arguments, merging.main)
