"""The figures of fnrl's learning curves: panels, axis labels and styles that the commands share.

``fnrl.plot`` draws a run's training and evaluation curves with them, ``fnrl.evaluate`` the
returns of a run's checkpoints, so that every fnrl plot reads alike. matplotlib is imported when
a figure is made, with its Agg canvas (no display), so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# What the x axis of a learning curve counts, and its label.
X_CHOICES = ("steps", "frames")
X_LABELS = {
    "steps": "agent steps (summed over envs)",
    "frames": "frames (agent steps × frame skip)",
}


def train_label() -> str:
    """The y label of a training panel: the recent return, and over how many games."""
    # fnrl.logging defines the recent return and imports tensorboardX (seconds): imported here.
    from fnrl.logging import RECENT_EPISODES

    return f"return (mean of last {RECENT_EPISODES} training games)"


def eval_label(episodes: Sequence[int] = (), *, greedy: bool = True) -> str:
    """The y label of an evaluation panel: how many games each point is the mean of."""
    counts = sorted({int(k) for k in episodes})
    if not counts:
        number = "K"
    elif len(counts) == 1:
        number = str(counts[0])
    else:
        number = f"{counts[0]}–{counts[-1]}"
    return f"evaluation return (mean of {number} {'greedy' if greedy else 'sampled'} games)"


def new_figure(panels: int) -> tuple[Figure, list[Any]]:
    """A matplotlib figure on the Agg canvas (no display) with ``panels`` axes side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed margins, which fit fnrl's labels: a constrained layout costs as much as the drawing.
    width = 6.4 * panels
    figure = Figure(figsize=(width, 4.8))
    figure.subplots_adjust(
        left=0.9 / width, right=1 - 0.15 / width, bottom=0.11, top=0.87, wspace=0.25
    )
    FigureCanvasAgg(figure)
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def style_axes(ax: Any, *, x: str, ylabel: str, title: str | None = None) -> None:
    """Labels a panel's axes (x from :data:`X_LABELS`), as every fnrl learning-curve plot does.

    Ticks of x read 500k, 2M rather than a separate 1e6 multiplier.
    """
    from matplotlib.ticker import EngFormatter

    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3)
