"""The figures of fnrl's learning curves: panels, axis labels and styles that the commands share.

``fnrl.plot`` draws a run's training and evaluation curves with them, ``fnrl.evaluate`` the
returns of a run's checkpoints, so that every fnrl plot reads alike. Legends sit under the
panels, never over a curve, and the figure grows to hold them. matplotlib is imported when a
figure is made, with its Agg canvas (no display), so that importing this module stays cheap.
"""

from __future__ import annotations

import textwrap
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


def games_label(episodes: Sequence[int] = (), *, greedy: bool = True) -> str:
    """What a point of an evaluation curve is the mean of: ``mean of 10 greedy games``."""
    counts = sorted({int(k) for k in episodes})
    if not counts:
        number = "K"
    elif len(counts) == 1:
        number = str(counts[0])
    else:
        number = f"{counts[0]}–{counts[-1]}"
    return f"mean of {number} {'greedy' if greedy else 'sampled'} games"


def eval_label(episodes: Sequence[int] = (), *, greedy: bool = True) -> str:
    """The y label of an evaluation panel: how many games each point is the mean of."""
    return f"evaluation return ({games_label(episodes, greedy=greedy)})"


# Inches, which fit fnrl's labels: a constrained layout costs as much as the drawing.
_PANEL_WIDTH = 6.4
_AXES_HEIGHT = 3.65  # a panel's axes, between its title and its tick labels
_TOP = 0.62  # the figure's title and a panel's
_BELOW_AXES = 0.53  # tick labels and the x label
_LEGEND_LINE = 0.185  # a line of a legend in "small" type
_LEGEND_BORDER = 0.2  # a legend's frame and the space around it
# Characters of a legend line in "small" type that fit a panel's width, with the line's handle.
_LEGEND_CHARS = 80


def new_figure(panels: int) -> tuple[Figure, list[Any]]:
    """A matplotlib figure on the Agg canvas (no display) with ``panels`` axes side by side.

    Its legends go below the panels (:func:`legends_below`), which sizes the figure to them.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_PANEL_WIDTH * panels, _TOP + _AXES_HEIGHT + _BELOW_AXES))
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, panels, squeeze=False)[0])
    _fit(figure, legend=0.0)
    return figure, axes


def _fit(figure: Figure, *, legend: float) -> None:
    """Sizes ``figure`` to its panels and ``legend`` inches of legend under them."""
    width = figure.get_figwidth()
    height = _TOP + _AXES_HEIGHT + _BELOW_AXES + legend
    figure.set_size_inches(width, height)
    figure.subplots_adjust(
        left=0.9 / width,
        right=1 - 0.15 / width,
        bottom=(_BELOW_AXES + legend) / height,
        top=1 - _TOP / height,
        wspace=0.25,
    )


def legends_below(figure: Figure, titles: Sequence[str | None] | None = None) -> None:
    """Draws each panel's legend under its x label, where it covers no curve, and makes the
    figure taller to hold the longest; labels too long for a panel's width are wrapped.

    Args:
        figure: made by :func:`new_figure`, its curves drawn with their labels.
        titles: per panel, its legend's title (None: no title); None for no titles.
    """
    axes = figure.axes
    titles = [None] * len(axes) if titles is None else list(titles)
    legends = []
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        labels = [textwrap.fill(label, _LEGEND_CHARS, subsequent_indent="    ") for label in labels]
        legends.append((handles, labels))
    lines = [
        sum(label.count("\n") + 1 for label in labels) + (title is not None)
        for (_, labels), title in zip(legends, titles, strict=True)
    ]
    _fit(figure, legend=max(lines) * _LEGEND_LINE + _LEGEND_BORDER)
    top = 1 - (_TOP + _AXES_HEIGHT + _BELOW_AXES) / figure.get_figheight()
    for i, (ax, (handles, labels), title) in enumerate(zip(axes, legends, titles, strict=True)):
        # Centred in the panel's share of the figure's width, the most a legend may take.
        ax.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=((i + 0.5) / len(axes), top),
            bbox_transform=figure.transFigure,
            title=title,
            fontsize="small",
            title_fontsize="small",
        )


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
