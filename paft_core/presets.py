"""Named choices a spec picks from: merge recipes (each with its paper) and TRL's DPO-family losses."""

from typing import Literal

DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")  # TRL 1.16
# The losses TRL 1.16 computes with `label_smoothing` (the others ignore it, sigmoid included).
SMOOTHED_LOSSES = ("exo_pair", "robust", "aot", "aot_unpaired")

# method → (default sparsifier, consensus, paper)
METHODS = {
    "linear": ("keep", "mean", "https://arxiv.org/abs/2203.05482"),  # weighted average (model soups)
    "task_arithmetic": ("keep", "sum", "https://arxiv.org/abs/2212.04089"),
    "ties": ("magnitude", "ties", "https://arxiv.org/abs/2306.01708"),
    "dare_linear": ("dare", "sum", "https://arxiv.org/abs/2311.03099"),
    "dare_ties": ("dare", "ties", "https://arxiv.org/abs/2311.03099"),
    "breadcrumbs": ("breadcrumbs", "sum", "https://arxiv.org/abs/2312.06795"),  # Model Breadcrumbs
    "breadcrumbs_ties": ("breadcrumbs", "ties", "https://arxiv.org/abs/2312.06795"),  # with TIES signs
}

MergeMethod = Literal[tuple(METHODS)]

# Named merge recipes: `merge: {preset: NAME}` fills the fields a spec leaves out.
MERGE_PRESETS = {
    # PAFT (Pentyala et al., 2024, https://arxiv.org/abs/2406.17923): the SFT delta is trimmed by magnitude
    # to 5 % (95 % exact zeros, where L1 pushed it down), which keeps ~97 % of its skill on the demo
    # (BENCHMARKS.md, λ sweep); the preference delta to half; TIES elects signs where both are left.
    "paft-ties": {"method": "ties", "sparsify": ["magnitude", "magnitude"], "density": [0.05, 0.5]},
    "ties": {"method": "ties", "density": 0.5},  # Yadav et al., 2023, https://arxiv.org/abs/2306.01708
    "dare-ties": {"method": "dare_ties", "density": 0.5},  # Yu et al., 2023, https://arxiv.org/abs/2311.03099
    "dare-linear": {"method": "dare_linear", "density": 0.5},  # Yu et al., 2023 (as above)
    "task-arithmetic": {"method": "task_arithmetic"},  # Ilharco et al., 2023, https://arxiv.org/abs/2212.04089
    "linear": {"method": "linear"},  # Wortsman et al., 2022, https://arxiv.org/abs/2203.05482
    # Davari & Belilovsky, 2023, https://arxiv.org/abs/2312.06795: the top 1 % dropped, the next 50 % kept
    "breadcrumbs-ties": {"method": "breadcrumbs_ties", "density": 0.5, "outliers": 0.01},
}


def keeps_loss_l1_delta(merge, l1) -> bool:
    """Whether a two-delta merge (MergeSpec) keeps a loss-mode L1 (L1Spec) SFT delta as trained: no exact
    zeros, so L1 is lost."""
    if "sft" not in merge.deltas or len(merge.deltas) < 2 or not l1.strength or l1.mode != "loss":
        return False
    chosen = (merge.sparsify or ["method"] * len(merge.deltas))[merge.deltas.index("sft")]
    return (METHODS[merge.method][0] if chosen == "method" else chosen) == "keep"
