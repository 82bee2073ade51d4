"""The merge stage (merge.py) and its parts: checkpoint I/O, deltas, sparsifiers, methods, blocked
kernels, report, plots, model card and LoRA export."""
