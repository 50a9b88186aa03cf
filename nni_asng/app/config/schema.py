"""The schema of an experiment config (``ExperimentConfig``, one pydantic model per section).

Loaded, overridden and checked by :mod:`nni_asng.app.config.loading`.

Schema (defaults in brackets; see ``nni_asng/app/configs/*.yaml``, listed by ``nni-asng configs``, for complete examples)::

    name: str                       experiment name (letters, digits, '_', '-', '.')
    description: str ['']           one line, shown by `nni-asng configs`
    seed: int [0]                   seeds weights, sampling and data order
    space:    {name, args: {}}      a name of nni_asng.app.config.registry.SPACES; args of its constructor
    strategy: {name, args: {}}      a name of nni_asng.app.config.registry.STRATEGIES; args of its constructor
    data:                           dataset [fashion_mnist], root [null: default location], limit [null: all]
                                    (count or fraction of the training split used by the search),
                                    subset_seed [null: seed] (draws that subset; fix it so every seed searches
                                    the same images, e.g. a tabular benchmark's), resolution [null: native]
                                    (resize images to resolution x resolution, search and retraining),
                                    batch_size [64], num_workers [0], augment [true],
                                    mask [center] / center_fraction [0.5] / pixel_fraction [0.8] (inpainting),
                                    factory [null] ('module:function' returning your own (train, val[, test])
                                    datasets or loaders, see nni_asng.app.runners.userdata) with factory_args [{}]
    search:                         epochs [10], optimizer {name sgd|adam|adamw, lr, momentum, nesterov,
                                    weight_decay, betas, schedule cosine|constant, min_lr}, gradient_clip [5],
                                    device auto|cpu|cuda, log_every_n_steps [10], checkpoint_every_n_steps [100],
                                    progress_bar [true], limit_train_batches [null], evaluate_batches [4],
                                    threads [null: PyTorch's default] (CPU threads; 1 avoids OpenMP
                                    oversubscription on busy machines), devices [1] and num_nodes [1]
                                    (> 1: Lightning DDP, one process per device; λ is shared by the ranks;
                                    num_nodes > 1: one `nni-asng search` per machine with MASTER_ADDR,
                                    MASTER_PORT and NODE_RANK set, see docs/multi-machine.md),
                                    precision [32] (32 | bf16-mixed | 16-mixed: Lightning mixed precision of
                                    the weights' forward/backward; θ and its losses stay float32/64),
                                    channels_last [false] (convolutional spaces: model and batches in
                                    torch.channels_last memory format, faster convolutions on GPUs)
    retrain:                        space_args {} (override space.args for the fixed network), param_budget,
                                    epochs, batch_size, optimizer, gradient_clip, aux_weight, drop_path_prob,
                                    label_smoothing, cutout, augment, limit, test_limit, eval_every_n_epochs,
                                    seeds [[0]], device, progress_bar, limit_train_batches, threads,
                                    precision [32], channels_last [false] (as in search)
    output:   {dir}                 [runs/<name>]
    launch:                         port [8080], trial_concurrency [1], trial_gpu_number [auto], max_trial_duration,
                                    max_experiment_duration, experiment_working_directory [<output>/nni-experiments],
                                    training_service [{platform: local}], python, poll_interval [5],
                                    sweep {seeds [null: [seed]], strategies [null: [strategy]]: list of {name,
                                    args}} (the search trials of the pipeline: one per strategy x seed),
                                    report_every_n_steps [null: per epoch only], report_batches [null: all of D_θ]
                                    (what a search trial reports to NNI, see nni_asng.app.runners.reporter)
    tabular:                        (``nni-asng tabulate``) seeds [[0, 1]], sample [250] (architectures trained
                                    with the seeds after the first; null: all), validation [2000] (held-out
                                    training images), processes [1], max_architectures [100000]
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .registry import space_entry

__all__ = ['ExperimentConfig', 'OptimizerConfig', 'SearchConfig', 'RetrainConfig', 'DataConfig', 'LaunchConfig',
           'TabularConfig']


class _Section(BaseModel):
    model_config = ConfigDict(extra='forbid', strict=True, validate_default=True)


def _check_limit(value: Any) -> Any:
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'expected a count (integer >= 1) or a fraction in (0, 1], got {value!r}')
    if isinstance(value, int) and value < 1:
        raise ValueError(f'a count must be >= 1, got {value}')
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ValueError(f'a fraction must lie in (0, 1], got {value} (write an integer for a count)')
    return value


def _check_seeds(seeds: list[int]) -> list[int]:
    if any(s < 0 for s in seeds):
        raise ValueError(f'seeds must be non-negative integers, got {seeds}')
    if len(set(seeds)) != len(seeds):
        raise ValueError(f'seeds must be distinct, got {seeds}')
    return seeds


def _lightning_precision(value: Any) -> Any:
    """Lightning's spellings: 32 and '32' (full precision), 16 / '16' (= '16-mixed'), 'bf16' (= 'bf16-mixed')."""
    if isinstance(value, bool):
        return value
    return {32: '32', 16: '16-mixed', '16': '16-mixed', 'bf16': 'bf16-mixed'}.get(value, value)


Limit = Optional[Any]   # checked by _check_limit: None, int count >= 1 or float fraction in (0, 1]


class SpaceConfig(_Section):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class StrategyConfig(_Section):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Section):
    dataset: str = 'fashion_mnist'
    root: Optional[str] = None
    limit: Limit = None
    subset_seed: Optional[int] = Field(None, ge=0)
    resolution: Optional[int] = Field(None, ge=4)
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(0, ge=0)
    augment: bool = True
    mask: Optional[Literal['center', 'pixel', 'half']] = None
    center_fraction: float = Field(0.5, gt=0, le=1)
    pixel_fraction: float = Field(0.8, ge=0, le=1)
    factory: Optional[str] = Field(None, pattern=r'^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$')
    factory_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator('limit')
    @classmethod
    def check_limit(cls, value):
        return _check_limit(value)


class OptimizerConfig(_Section):
    name: Literal['sgd', 'adam', 'adamw'] = 'sgd'
    lr: float = Field(0.025, gt=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(3e-4, ge=0)
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    schedule: Literal['cosine', 'constant'] = 'cosine'
    min_lr: float = Field(0.0, ge=0)

    def recipe(self) -> dict[str, Any]:
        """Arguments of :class:`nni_asng.evaluators.classification.OptimizerRecipe`."""
        return dict(optimizer=self.name, learning_rate=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay, betas=tuple(self.betas), lr_schedule=self.schedule,
                    min_lr=self.min_lr)


Device = Literal['auto', 'cpu', 'cuda']


class _TrainerSettings(_Section):
    """The Lightning trainer's settings that search and retraining share."""

    epochs: int = Field(10, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    gradient_clip: Optional[float] = Field(5.0, gt=0)
    device: Device = 'auto'
    progress_bar: bool = True
    limit_train_batches: Limit = None
    threads: Optional[int] = Field(None, ge=1)
    precision: Literal['32', 'bf16-mixed', '16-mixed'] = '32'
    channels_last: bool = False

    @field_validator('limit_train_batches')
    @classmethod
    def check_limit(cls, value):
        return _check_limit(value)

    @field_validator('precision', mode='before')
    @classmethod
    def _precision(cls, value):
        return _lightning_precision(value)


class SearchConfig(_TrainerSettings):
    log_every_n_steps: int = Field(10, ge=1)
    checkpoint_every_n_steps: Optional[int] = Field(100, ge=1)
    evaluate_batches: int = Field(4, ge=1)
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)


class RetrainConfig(_TrainerSettings):
    space_args: dict[str, Any] = Field(default_factory=dict)
    param_budget: Optional[int] = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    aux_weight: float = Field(0.4, ge=0)
    drop_path_prob: float = Field(0.0, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    cutout: Union[bool, int] = 0
    augment: bool = True
    limit: Limit = None
    test_limit: Limit = None
    eval_every_n_epochs: int = Field(1, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator('limit', 'test_limit')
    @classmethod
    def check_data_limits(cls, value):
        return _check_limit(value)

    @field_validator('seeds')
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        return _check_seeds(seeds)

    @field_validator('cutout')
    @classmethod
    def _cutout(cls, value):
        if not isinstance(value, bool) and value < 0:
            raise ValueError(f'expected true/false or a side length >= 0, got {value}')
        return value


class OutputConfig(_Section):
    dir: Optional[str] = None


class SweepConfig(_Section):
    """``launch.sweep``: the search trials of ``nni-asng launch`` (one per strategy x seed)."""

    seeds: Optional[list[int]] = Field(None, min_length=1)
    strategies: Optional[list[StrategyConfig]] = Field(None, min_length=1)

    @field_validator('seeds')
    @classmethod
    def _seeds(cls, seeds):
        return seeds if seeds is None else _check_seeds(seeds)


class LaunchConfig(_Section):
    port: int = Field(8080, ge=1, le=65535)
    trial_concurrency: int = Field(1, ge=1)
    trial_gpu_number: Union[Literal['auto'], int] = 'auto'
    max_trial_duration: Optional[str] = None
    max_experiment_duration: Optional[str] = None
    experiment_working_directory: Optional[str] = None
    training_service: dict[str, Any] = Field(default_factory=lambda: {'platform': 'local'})
    python: Optional[str] = None
    poll_interval: float = Field(5.0, gt=0)
    sweep: SweepConfig = Field(default_factory=lambda: SweepConfig())
    report_every_n_steps: Optional[int] = Field(None, ge=1)
    report_batches: Optional[int] = Field(None, ge=1)

    @field_validator('trial_gpu_number')
    @classmethod
    def _gpus(cls, value):
        if value != 'auto' and value < 0:
            raise ValueError(f"expected 'auto' or an integer >= 0, got {value}")
        return value

    @field_validator('training_service')
    @classmethod
    def _platform(cls, value):
        if 'platform' not in value:
            raise ValueError('needs a "platform" key (local, remote, kubeflow, frameworkcontroller, ...)')
        return value

    @field_validator('max_trial_duration', 'max_experiment_duration')
    @classmethod
    def _duration(cls, value):
        if value is not None and not re.fullmatch(r'\d+(\.\d+)?\s*[smhd]', value.strip()):
            raise ValueError(f"expected a duration like '30m', '2h' or '1d', got {value!r}")
        return value


class TabularConfig(_Section):
    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1)
    sample: Optional[int] = Field(250, ge=1)
    validation: int = Field(2000, ge=1)
    processes: int = Field(1, ge=1)
    max_architectures: int = Field(100_000, ge=1)
    # Train one representative per functional equivalence class of the space (e.g. 'nas_bench_201'), and every
    # class with every seed; None trains every architecture.
    equivalence: Optional[str] = None
    # A table folder built with the same space, data and retrain recipe: its rows are taken over for the
    # (architecture or class, seed) pairs it holds instead of training them again.
    reuse: Optional[str] = None

    @field_validator('seeds')
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        return _check_seeds(seeds)


class ExperimentConfig(_Section):
    name: str = Field(pattern=r'^[A-Za-z0-9][A-Za-z0-9_.-]*$', max_length=100)
    description: str = ''
    seed: int = Field(0, ge=0)
    space: SpaceConfig
    strategy: StrategyConfig
    data: DataConfig = Field(default_factory=DataConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    tabular: TabularConfig = Field(default_factory=TabularConfig)

    # Where the config came from (for messages); not part of the schema.
    source: Optional[str] = Field(None, exclude=True)

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir if self.output.dir else os.path.join('runs', self.name)).expanduser()

    @property
    def task(self) -> str:
        return space_entry(self.space.name).task

