"""PNG figures of a search: distribution statistics per epoch, the final distribution, validation loss vs
parameters of multi-complexity architectures, and an inpainting run's test images (masked input, output,
original). Matplotlib's Agg backend, no display."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from .outputs import atomic_write  # noqa: E402

__all__ = ['plot_history', 'plot_distribution', 'plot_complexity', 'plot_inpainting', 'INPAINTING_COLUMNS']

# Keys of the history records that are not per-epoch scalars of the distribution.
_SKIP = {'epoch', 'step', 'architectures'}
_TITLES = {'convergence': 'convergence (mean max θ)', 'entropy': 'entropy of p_θ', 'delta': 'step size δ',
           'lr': 'θ learning rate', 'eta': 'θ learning rate η'}


def _save(fig, path: Path) -> Path:
    def write(tmp: Path):
        fig.savefig(tmp, format='png', dpi=110, bbox_inches='tight')
    atomic_write(path, write)
    plt.close(fig)
    return path


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = '') -> Path | None:
    """One panel per scalar of the per-epoch records (convergence, entropy, step size, ...)."""
    if not history:
        return None
    keys: list[str] = []
    for record in history:
        for key, value in record.items():
            if key not in _SKIP and key not in keys and isinstance(value, (int, float)) and not isinstance(value, bool):
                keys.append(key)
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    epochs = [r.get('epoch', i) + 1 for i, r in enumerate(history)]
    for ax, key in zip(axes.flat, keys):
        values = [r.get(key, math.nan) for r in history]
        values = [v if isinstance(v, (int, float)) else math.nan for v in values]
        ax.plot(epochs, values, marker='o', markersize=3)
        ax.set_title(_TITLES.get(key, key), fontsize=10)
        ax.set_xlabel('epoch')
        ax.grid(alpha=0.3)
        if key == 'delta' and all(v > 0 for v in values if not math.isnan(v)):
            ax.set_yscale('log')
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(path))


def _value_label(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 18 else text[:17] + '…'


def plot_distribution(probabilities: Mapping[str, Mapping[Any, float]], path: str | Path,
                      chosen: Mapping[str, Any] | None = None, title: str = '') -> Path | None:
    """Heatmap labels x categories of P(value); the exported (or most likely) value is framed.

    Works for any space: rows are the labels, columns the values of each label in order.
    """
    labels = [label for label, dist in probabilities.items() if dist]
    if not labels:
        return None
    width = max(len(probabilities[label]) for label in labels)
    fig, ax = plt.subplots(figsize=(min(2.0 + 1.1 * width, 22), min(1.5 + 0.32 * len(labels), 40)))
    grid = [[math.nan] * width for _ in labels]
    for i, label in enumerate(labels):
        for j, p in enumerate(probabilities[label].values()):
            grid[i][j] = p
    image = ax.imshow(grid, aspect='auto', cmap='viridis', vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label='probability', fraction=0.04)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xticks(range(width))
    ax.set_xticklabels([str(j) for j in range(width)])
    ax.set_xlabel('category (index)')
    for i, label in enumerate(labels):
        values = list(probabilities[label])
        best = max(range(len(values)), key=lambda j: probabilities[label][values[j]])
        target = best
        if chosen is not None and label in chosen:
            wanted = json.dumps(chosen[label]) if not isinstance(chosen[label], str) else chosen[label]
            for j, v in enumerate(values):
                if (v if isinstance(v, str) else json.dumps(v)) == wanted:
                    target = j
        ax.add_patch(plt.Rectangle((target - 0.5, i - 0.5), 1, 1, fill=False, edgecolor='red', linewidth=1.5))
        if width <= 12 and len(labels) <= 60:
            for j, v in enumerate(values):
                ax.text(j, i, _value_label(v), ha='center', va='center', fontsize=5,
                        color='white' if probabilities[label][v] < 0.6 else 'black')
    ax.set_title(title or 'final architecture distribution (red: exported choice)', fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


_METRIC_LABELS = {'params': 'parameters', 'flops': 'FLOPs', 'latency_ms': 'latency (ms)'}


def plot_complexity(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = '', metric: str = 'params',
                    background: Sequence[Mapping[str, Any]] = ()) -> Path | None:
    """The front of a multi-complexity search: validation loss (supernet, D_θ batches) vs ``metric`` of its N
    architectures (marked, with their ε), over ``background`` architectures (e.g. random ones) in grey."""
    points = [r for r in rows if r.get('val_loss') is not None and r.get(metric) is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    cloud = [r for r in background if r.get('val_loss') is not None and r.get(metric) is not None]
    if cloud:
        ax.scatter([r[metric] for r in cloud], [r['val_loss'] for r in cloud], s=12, color='0.7',
                   label='random architectures', zorder=1)
    xs = [r[metric] for r in points]
    ys = [r['val_loss'] for r in points]
    ax.plot(xs, ys, marker='o', color='tab:red', label='exports (one per ε)', zorder=2)
    for r in points:
        ax.annotate(f"ε={r['epsilon']:g}", (r[metric], r['val_loss']), textcoords='offset points', xytext=(4, 4),
                    fontsize=8)
    if cloud:
        ax.legend(fontsize=8)
    ax.set_xlabel(_METRIC_LABELS.get(metric, metric))
    ax.set_ylabel('validation loss (supernet weights)')
    ax.grid(alpha=0.3)
    ax.set_title(title or 'multi-complexity: loss vs size', fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


#: The columns of :func:`plot_inpainting`, left to right.
INPAINTING_COLUMNS = ('masked input', 'output', 'original')


def _images(batch: Any, data_range: float) -> np.ndarray:
    """N x C x H x W (a CPU tensor or array) -> N x H x W (one channel) or N x H x W x 3, scaled to [0, 1]."""
    array = np.asarray(batch, dtype=np.float64) / data_range
    if array.ndim != 4:
        raise ValueError(f'expected images N x C x H x W, got shape {array.shape}')
    array = np.clip(array, 0.0, 1.0)
    return array[:, 0] if array.shape[1] == 1 else np.moveaxis(array[:, :3], 1, -1)


def plot_inpainting(masked: Any, output: Any, original: Any, path: str | Path, title: str = '',
                    data_range: float = 1.0, panel: float = 0.9) -> Path | None:
    """Inpainting examples, one per row: masked input, output, original side by side (:data:`INPAINTING_COLUMNS`),
    each output labelled with its PSNR; images N x C x H x W in [0, ``data_range``]."""
    columns = [_images(x, data_range) for x in (masked, output, original)]
    n = len(columns[0])
    if n == 0:
        return None
    if any(len(c) != n or c.shape[1:] != columns[0].shape[1:] for c in columns):
        raise ValueError(f'masked, output and original images differ in number or size: '
                         f'{[c.shape for c in columns]}')
    header = 0.18 + 0.14 * (title.count('\n') + 1) if title else 0.18       # inches: column titles (+ title)
    height = n * (panel - 0.05) + header
    fig, axes = plt.subplots(n, 3, figsize=(3 * panel + 0.2, height), squeeze=False)
    for i in range(n):
        mse = float(np.mean((columns[1][i] - columns[2][i]) ** 2))
        for j, column in enumerate(columns):
            ax = axes[i][j]
            ax.imshow(column[i], cmap='gray' if column.ndim == 3 else None, vmin=0.0, vmax=1.0,
                      interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if i == 0:
                ax.set_title(INPAINTING_COLUMNS[j], fontsize=8)
        psnr = 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf
        axes[i][1].set_xlabel(f'{psnr:.1f} dB', fontsize=7, labelpad=1)
    if title:
        fig.suptitle(title, fontsize=8, y=1.0 - 0.04 / height, va='top')
    fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.2, rect=(0.0, 0.0, 1.0, 1.0 - max(0.0, header - 0.3) / height))
    return _save(fig, Path(path))
