"""Adam with L2 weight decay, and clipping by the gradient's norm: how AdvantageNAS and REINFORCE step θ.

Adam is Algorithm 1 of Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", with the weight decay
added to the gradient (L2 regularisation, not AdamW's decoupled decay); advantagenas Appendix D applies it to θ
with β = (0.5, 0.999), weight decay 3e-3, the gradient's norm clipped at 1.0 and a cosine-annealed learning rate
(the schedule is the caller's: :meth:`PolicyAdam.step` takes the learning rate of each step).

The arithmetic is that of ``torch.optim.Adam(weight_decay=...)`` (single-tensor path) and
``torch.nn.utils.clip_grad_norm_``, in the same order (the moving averages as ``lerp`` and ``mul``/``addcmul``,
the denominator √v / √(1 − β2^t) + ε, the step (−lr / (1 − β1^t))·m / denominator), so a numpy θ follows a
torch θ. Not bit for bit: torch's CPU kernels fuse the multiply–adds into one rounding, and its float64 square
root is 1 ulp from the correctly rounded one for ~1 % of inputs (torch 2.14 CPU build, measured), so last bits
differ; after 200 steps θ agrees within ~1e-15 of its largest entry (tests/test_policy_gradient.py checks 1e-12).
"""
from __future__ import annotations

import numpy as np

#: Added to the norm before dividing, as in ``clip_grad_norm_`` (keeps a zero gradient from dividing by zero).
CLIP_EPS = 1e-6


def clip_by_norm(gradient: np.ndarray, max_norm: float) -> np.ndarray:
    """``gradient · min(1, max_norm / (‖gradient‖₂ + 1e-6))`` (``torch.nn.utils.clip_grad_norm_``; advantagenas
    Appendix D clips θ's gradient at 1.0). An overflowing norm (inf) scales the gradient to 0."""
    with np.errstate(over='ignore'):
        norm = np.sqrt(np.sum(gradient * gradient))
    coefficient = min(float(max_norm) / (float(norm) + CLIP_EPS), 1.0)
    return gradient * coefficient


class PolicyAdam:
    """Adam on one flat float64 parameter vector (Kingma & Ba 2015, Algorithm 1; L2 weight decay as
    ``torch.optim.Adam``'s ``weight_decay``; advantagenas Appendix D).

    :meth:`step` descends: pass the negated ascent direction, as to a torch optimiser.
    """

    def __init__(self, size: int, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
                 eps: float = 1e-8):
        beta1, beta2 = (float(b) for b in betas)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f'betas must be in [0, 1), got {betas!r}')
        if not weight_decay >= 0:
            raise ValueError(f'weight_decay must be >= 0, got {weight_decay!r}')
        if not eps >= 0:
            raise ValueError(f'eps must be >= 0, got {eps!r}')
        self.betas = (beta1, beta2)
        self.weight_decay = float(weight_decay)
        self.eps = float(eps)
        self.m = np.zeros(int(size))          # first moment (exp_avg)
        self.v = np.zeros(int(size))          # second raw moment (exp_avg_sq)
        self.t = 0                            # steps taken

    def step(self, param: np.ndarray, gradient: np.ndarray, lr: float) -> None:
        """One Adam step of ``param`` (in place) along −``gradient`` with learning rate ``lr``."""
        beta1, beta2 = self.betas
        self.t += 1
        with np.errstate(over='ignore', invalid='ignore'):
            g = np.asarray(gradient, dtype=np.float64)
            if self.weight_decay != 0:
                g = g + self.weight_decay * param          # L2 weight decay, added to the gradient
            # m ← m + (1 − β1)(g − m), written as torch's lerp writes it for a weight >= 0.5
            w = 1.0 - beta1
            self.m = self.m + w * (g - self.m) if w < 0.5 else g - (g - self.m) * (1.0 - w)
            self.v = self.v * beta2 + ((1.0 - beta2) * g) * g
            bias_correction1 = 1.0 - beta1 ** self.t
            bias_correction2 = 1.0 - beta2 ** self.t
            step_size = lr / bias_correction1
            denominator = np.sqrt(self.v) / bias_correction2 ** 0.5 + self.eps
            param += (-step_size * self.m) / denominator

    def state_dict(self) -> dict:
        return {'m': self.m.copy(), 'v': self.v.copy(), 'step': self.t}

    def load_state_dict(self, state: dict) -> None:
        """Our own state (``m``, ``v``, ``step``), or a ``torch.optim.Adam`` state dict of one parameter
        (``state[0]``: ``step``, ``exp_avg``, ``exp_avg_sq``; read through ``__array__``/``float``, without
        importing torch), as checkpoints written before θ became a numpy array hold."""
        if 'param_groups' in state:
            entries = state.get('state', {})
            if len(entries) > 1 or len(state['param_groups']) != 1:
                raise ValueError('a torch Adam state of one parameter was expected, got '
                                 f'{len(entries)} parameter states in {len(state["param_groups"])} groups')
            if not entries:                   # torch creates the state at the first step
                self.m, self.v, self.t = np.zeros_like(self.m), np.zeros_like(self.v), 0
                return
            (entry,) = entries.values()
            state = {'m': entry['exp_avg'], 'v': entry['exp_avg_sq'], 'step': entry['step']}
        m = np.array(state['m'], dtype=np.float64).reshape(-1)
        v = np.array(state['v'], dtype=np.float64).reshape(-1)
        if m.shape != self.m.shape or v.shape != self.v.shape:
            raise ValueError(f'Adam state of {m.size}/{v.size} entries for a parameter of {self.m.size}')
        step = float(state['step'])
        if not (step >= 0 and step == int(step)):
            raise ValueError(f'Adam step count must be a whole number >= 0, got {state["step"]!r}')
        self.m, self.v, self.t = m, v, int(step)
