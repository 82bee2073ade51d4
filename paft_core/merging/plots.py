"""PNG plots of a merge report, for people: per-layer density heat maps and magnitude histograms."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402

from paft_core.density import REL_THRESHOLDS  # noqa: E402
from paft_core.merging.report import layer_grid  # noqa: E402


def write_all(report: dict, folder: Path) -> list[Path]:
    """Write every plot of a report into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [density_heatmap(report, folder / "density.png"),
             magnitude_histograms(report, folder / "magnitudes.png")]
    return [path for path in paths if path is not None]


def density_heatmap(report: dict, path: Path) -> Path | None:
    """One heat map per delta: layers down, module kinds across, colour = density at the first rel cut."""
    key = f"density_rel{REL_THRESHOLDS[0]:g}"
    grids = [(label, *layer_grid(report["modules"], f"{label}/{key}")) for label in report["labels"]]
    grids = [grid for grid in grids if grid[2]]
    if not grids:
        return None  # no per-layer modules (e.g. a model without `layers.N.` names)
    figure, axes = plt.subplots(1, len(grids), figsize=(4 * len(grids), 6), squeeze=False)
    for axis, (label, kinds, rows) in zip(axes[0], grids, strict=True):
        image = axis.imshow(rows, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        axis.set(title=f"{label}: density (|x| > {REL_THRESHOLDS[0]:g}·max)", xlabel="module", ylabel="layer")
        axis.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right")
        figure.colorbar(image, ax=axis, fraction=0.05)
    # fixed margins: tight_layout measured every label and took a third of the plotting time
    width = figure.get_figwidth()  # margins in inches: tick labels left, colour bar labels right
    figure.subplots_adjust(left=0.8 / width, right=1 - 0.5 / width, bottom=0.17, top=0.94, wspace=0.45)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def magnitude_histograms(report: dict, path: Path) -> Path:
    """Histogram of log10|x| over the non-zero entries of each delta (one bin per power of two), overlaid."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for label in report["labels"]:
        counts = report["histograms"][label][1:]  # bin 0: zeros and denormals
        used = [index for index, count in enumerate(counts) if count]
        if not used:
            continue
        first, last = used[0], used[-1] + 1
        edges = [(exponent - 126) * math.log10(2) for exponent in range(first, last + 1)]
        axis.stairs(counts[first:last], edges, label=label)
    axis.set(xlabel="log10 |ΔW|", ylabel="entries", yscale="log", title="Delta magnitudes")
    axis.legend()
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.92)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
