"""Credit gates: the one-hot entry a_i of the chosen candidate as a tensor that requires grad.

advantagenas Eq. 7: multiplying the output of the chosen candidate of label i by a_i = 1 leaves
the forward pass unchanged, and one backward pass gives ∂r/∂a_i = ⟨∂r/∂O_i, O_i^j(x)⟩, the
first-order advantage of that choice. Gated supermodules (:mod:`.gated`) read their gate here.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch


class CreditGates:
    """Registry shared by the gated supermodules of one supernet."""

    def __init__(self) -> None:
        self.labels: set[str] = set()
        self.active: dict[str, torch.Tensor] = {}

    def register(self, labels) -> None:
        self.labels.update(labels)

    def get(self, label: str) -> torch.Tensor | None:
        return self.active.get(label)

    @contextlib.contextmanager
    def open(self, arch: dict[str, Any], device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
        """Gates a_i = 1 (requiring grad) for every gated label while the block runs."""
        self.active = {label: torch.ones((), device=device, requires_grad=True)
                       for label in sorted(self.labels) if label in arch}
        try:
            yield self.active
        finally:
            self.active = {}
