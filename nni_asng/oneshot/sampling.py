"""Path-sampling supermodules that activate a path without walking the module tree.

NNI's ``PathSamplingCell.resample`` calls ``self.simplify()`` on every call, which walks every
candidate operation of the cell (about 1.4 ms per cell of NNI's hub DARTS on a CPU core). A
probabilistic strategy activates 2λ paths per step, so on a GPU, where a step of a small supernet
takes tens of milliseconds, that walk would dominate the search's own overhead. The cell's labels
never change after construction: they are found once.
"""
from __future__ import annotations

from typing import Any

from nni.nas.oneshot.pytorch.supermodule.sampling import PathSamplingCell


class CachedPathSamplingCell(PathSamplingCell):
    """NNI's path-sampling ``Cell`` whose ``resample`` reads its labels from a cache."""

    _cell_labels: tuple[str, ...] | None = None

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        if self._cell_labels is None:
            self._cell_labels = tuple(self.simplify())
        if any(label not in memo for label in self._cell_labels):
            return super().resample(memo)          # something to draw at random: NNI's own path
        sampled = {label: memo[label] for label in self._cell_labels}
        multi = {label: value for label, value in sampled.items() if isinstance(value, list) and len(value) > 1}
        if multi:
            raise ValueError(f'a cell node takes exactly one input per operation, got {multi}')
        self._sampled = sampled
        return {}


CACHED_HOOKS = [CachedPathSamplingCell.mutate]
