"""Shared test configuration: test tiers, one torch thread and the user's own module (``user_module``).

Tiers (markers added here by module, so ``pytest -m core`` etc. select them; ``.ci/run`` runs all):

* ``core`` — the mathematics (distributions, optimizers): numpy, no NNI; seconds.
* ``oneshot`` — the NNI adapter, strategies, spaces and data on tiny NNI spaces; minutes.
* ``app`` — configs, CLI, NNI launch, end-to-end runs and packaging (subprocesses); the longest
  of these also carry ``slow``.
"""
import pytest

CORE = {'test_distributions', 'test_optimizers', 'test_asng_toy', 'test_policy_gradient', 'test_tabular_statistics',
        'test_nb201_canonical'}
ONESHOT = {'test_encoding', 'test_sampling', 'test_strategy_natural_gradient', 'test_strategy_policy_gradient',
           'test_multi_complexity', 'test_search_direction', 'test_resume', 'test_numerical_safety',
           'test_advantage_toy', 'test_inpainting', 'test_data', 'test_search_step_syncs', 'test_space_cae',
           'test_space_darts_cell', 'test_space_enas_cell', 'test_space_nas_bench_201', 'test_space_proxyless',
           'test_distributed', 'test_tabular', 'test_search_guards', 'test_warmup',
           'test_reproducibility'}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition('.')[2]
        tier = 'core' if module in CORE else 'oneshot' if module in ONESHOT else 'app'
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True, scope='module')
def private_nni_manifest(request, tmp_path_factory):
    """Every NNI experiment run in process (``NasExperiment``, ``nni-asng search``) records itself in NNI's manifest
    (``~/nni-experiments/.experiment``), which NNI reads whole several times per experiment: with the 1,300
    experiments a few suite runs leave there, that alone cost ~2 s of CPU per experiment (measured). One empty
    manifest per test module keeps it at milliseconds and leaves the user's own manifest alone. (Subprocesses
    get their own HOME where it matters; test modules that set a manifest themselves still do.)"""
    import sys
    if request.module.__name__.rpartition('.')[2] in CORE or 'nni' not in sys.modules:
        yield
        return
    from nni.tools.nnictl.config_utils import Experiments
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Experiments.__init__, '__defaults__', (str(tmp_path_factory.mktemp('nni-home')),))
        yield


@pytest.fixture(autouse=True, scope='module')
def one_torch_thread(request):
    """Tiny tensors: one intra-op thread avoids OpenMP oversubscription on busy 2-core machines.
    (The core tier imports torch only where a test compares with it: test_policy_gradient's Adam reference.)"""
    if request.module.__name__.rpartition('.')[2] in CORE:
        yield
        return
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def user_module(tmp_path_factory):
    """The user's space and data module of :mod:`pipeline_harness`, importable while the test module runs."""
    import sys

    from pipeline_harness import MODULE, write_user_module
    folder = tmp_path_factory.mktemp('usermod')
    write_user_module(folder)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)
