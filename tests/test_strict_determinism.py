"""GPU strict mode, audited on the CPU: no method dispatches an op that torch refuses to run on CUDA
under ``torch.use_deterministic_algorithms(True)``.

``deterministic: true`` (every reproduction config's default) stops a CUDA run at the first op with
no deterministic kernel; a user would find it hours into a real run. So every aten op each method
dispatches is recorded (``TorchDispatchMode``) in every stage: feature extraction, one training
step of each stage of its schedule (forward, loss, backward, optimiser step), SGMA's channel-group
artefact, test scores and attention maps; and checked against the ops that torch's documentation
of ``use_deterministic_algorithms`` lists as throwing a RuntimeError on CUDA.

Source: the docstring of ``torch.use_deterministic_algorithms`` in torch 2.14 ("The following
normally-nondeterministic operations will throw a RuntimeError when mode=True"), which the first
test reads from the installed torch so that the list below cannot drift from it unnoticed. Each
documented entry is mapped to the aten ops that implement it (the backward op where the entry says
"when attempting to differentiate"). NLLLoss: torch's CUDA source raises only in the spatial
variant with a reduction (``nll_loss2d_forward_out_cuda_template``); the one-dimensional
``nll_loss_forward`` behind cross-entropy on B x C logits has no such alert.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from method_workloads import METHODS, evaluate, op_recorder, prepare, stages, train_steps

# documented entry (as torch's docstring names it) -> aten ops that raise for it on CUDA
RAISING_ON_CUDA = {
    "torch.nn.AvgPool3d": {"avg_pool3d_backward"},
    "torch.nn.AdaptiveAvgPool2d": {"_adaptive_avg_pool2d_backward"},
    "torch.nn.AdaptiveAvgPool3d": {"_adaptive_avg_pool3d_backward"},
    "torch.nn.AdaptiveMaxPool2d": {"adaptive_max_pool2d_backward"},
    "torch.nn.FractionalMaxPool2d": {"fractional_max_pool2d_backward"},
    "torch.nn.FractionalMaxPool3d": {"fractional_max_pool3d_backward"},
    "torch.nn.MaxUnpool1d": {"max_unpool2d"},
    "torch.nn.MaxUnpool2d": {"max_unpool2d"},
    "torch.nn.MaxUnpool3d": {"max_unpool3d"},
    "torch.nn.functional.interpolate": {
        "upsample_linear1d_backward",
        "upsample_bilinear2d_backward",
        "upsample_bicubic2d_backward",
        "upsample_trilinear3d_backward",
        "_upsample_bilinear2d_aa_backward",
        "_upsample_bicubic2d_aa_backward",
    },
    "torch.nn.ReflectionPad1d": {"reflection_pad1d_backward"},
    "torch.nn.ReflectionPad2d": {"reflection_pad2d_backward"},
    "torch.nn.ReflectionPad3d": {"reflection_pad3d_backward"},
    "torch.nn.NLLLoss": {"nll_loss2d_forward"},
    "torch.nn.CTCLoss": {"_ctc_loss_backward"},
    "torch.nn.EmbeddingBag": {"_embedding_bag_backward", "_embedding_bag_dense_backward"},
    "torch.Tensor.put_": {"put_", "put"},
    "torch.histc": {"histc"},
    "torch.bincount": {"bincount"},
    "torch.median": {"median"},
    "torch.nn.functional.grid_sample": {"grid_sampler_2d_backward", "grid_sampler_3d_backward"},
    "torch.Tensor.scatter_reduce": {"scatter_reduce", "scatter_reduce_"},
    "torch.Tensor.resize_": set(),  # only with a quantized tensor: none here
}
RAISING_OPS = {op: entry for entry, ops in RAISING_ON_CUDA.items() for op in ops}


def documented_raising_entries() -> set[str]:
    """The entries of the installed torch's docstring under 'will throw a RuntimeError'."""
    doc = torch.use_deterministic_algorithms.__doc__
    section = doc.split("will throw a\n    :class:`RuntimeError` when ``mode=True``:")[1].split("In addition")[0]
    return set(re.findall(r"^\s+\* :(?:class|func):`([\w.]+)`", section, flags=re.MULTILINE))


def test_the_audited_list_is_the_installed_torch_documentation():
    documented = documented_raising_entries()
    assert len(documented) > 15, "the docstring's layout changed: read it again and update RAISING_ON_CUDA"
    assert documented == set(RAISING_ON_CUDA), documented ^ set(RAISING_ON_CUDA)


def test_the_audit_catches_a_listed_op():
    """The recorder sees a listed op where a model would dispatch it (bilinear resize, differentiated)."""
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    with op_recorder() as recorder:
        torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear").sum().backward()
    assert {name for name, *_ in recorder.calls} & set(RAISING_OPS) == {"upsample_bilinear2d_backward"}


@pytest.fixture(scope="module")
def paths(tiny, tmp_path_factory):
    from method_workloads import workload_paths

    with op_recorder() as recorder:  # SGMA's channel groups are built here: record that stage too
        paths = workload_paths(
            tiny.index_path, tiny.cfg["images_root"], tiny.store_path, tiny.cfg, tmp_path_factory.mktemp("strict")
        )
    paths.artefact_calls = recorder.calls
    return paths


def flagged(calls) -> list[str]:
    return sorted({f"{name} ({RAISING_OPS[name]})" for name, *_ in calls if name in RAISING_OPS})


def test_feature_extraction_dispatches_no_op_that_strict_cuda_refuses(tiny, tmp_path):
    from zslrepro.features.extract import extract

    with op_recorder() as recorder:
        extract(
            tiny.index,
            tiny.cfg["images_root"],
            tiny.cfg["feature_stores"]["rn18rand_64"],
            tmp_path / "f.h5",
            device="cpu",
        )
    assert recorder.calls and not flagged(recorder.calls), f"extraction: {flagged(recorder.calls)}"


def test_sgma_channel_groups_dispatch_no_op_that_strict_cuda_refuses(paths):
    assert paths.artefact_calls and not flagged(paths.artefact_calls), (
        f"sgma, stage channel_groups artefact: {flagged(paths.artefact_calls)}"
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_stage_dispatches_no_op_that_strict_cuda_refuses(method, paths):
    cfg, model, x, y = prepare(method, paths)
    problems = []
    for stage in stages(cfg):
        with op_recorder() as recorder:
            train_steps(model, cfg, x, y, 1, stage)
        problems += [f"{method}, training stage {stage or 'single'}: {op}" for op in flagged(recorder.calls)]
    with op_recorder() as recorder:
        _scores, _maps = evaluate(model, x)
    problems += [f"{method}, evaluation and attention maps: {op}" for op in flagged(recorder.calls)]
    assert not problems, "ops with no deterministic CUDA kernel:\n" + "\n".join(problems)


def test_determinism_is_switched_without_loading_the_compiler():
    """set_determinism sets torch's eager flag through set_deterministic_debug_mode: the public
    use_deterministic_algorithms also imports torch._inductor, about 2.5 s of every job here."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from zslrepro.runtime import set_determinism; set_determinism(True); "
        "a = torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled(); "
        "set_determinism(False); b = not torch.are_deterministic_algorithms_enabled(); "
        "print(a, b, 'torch._inductor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "False"]
