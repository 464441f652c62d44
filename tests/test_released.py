"""The MSDN authors' released models through our pipeline: import, diagnostics, evaluation, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CONFIG

from zslrepro.cli import main
from zslrepro.config import load_method_config, run_config
from zslrepro.errors import ZslError
from zslrepro.methods.msdn.release import BACKBONE, BACKBONE_CHILDREN, import_release
from zslrepro.released import diagnostics_path, torchvision_name
from zslrepro.training.runfiles import load_trained, read_model_file
from zslrepro.training.sources import FeatureSource


def release_state(store_path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """An official-format state dict (root MSDN.py's keys and shapes) for the tiny store's dataset."""
    g = torch.Generator().manual_seed(seed)
    source = FeatureSource(store_path)
    att = F.normalize(torch.as_tensor(np.asarray(source.att)).float(), dim=1)
    n_classes, n_att = att.shape
    channels, dim_v = source.input_shape[0], np.asarray(source.w2v_att).shape[1]
    mask = torch.full((1, n_classes), -1.0)
    mask[0, torch.as_tensor(source.unseen_classes).long()] = 1.0
    source.close()
    state = {
        "att": att,
        "V": torch.randn(n_att, dim_v, generator=g),
        "W_1": torch.randn(dim_v, channels, generator=g),
        "W_2": torch.randn(dim_v, channels, generator=g),
        "W_3": torch.zeros(dim_v, channels),
        "W_1_1": torch.randn(channels, dim_v, generator=g),
        "W_2_1": torch.randn(dim_v, channels, generator=g),
        "W_3_1": torch.zeros(channels, dim_v),
        "bias": torch.tensor(1),
        "mask_bias": mask,
        "prob_prune": torch.tensor(0),
        "resnet101.0.weight": torch.randn(4, 3, 7, 7, generator=g),
        "resnet101.4.0.conv1.weight": torch.randn(4, 4, 1, 1, generator=g),
    }
    return state


def official_scores(state: dict, x: torch.Tensor, w1: float, w2: float) -> torch.Tensor:
    """The test-time score of the official root MSDN.py, written from its equations (float64)."""
    s = {k: v.double() for k, v in state.items()}
    Fs = F.normalize(x.double().flatten(2), dim=1)  # b x f x r, normalize_F
    V = s["V"]
    S = torch.einsum("iv,vf,bfr->bir", V, s["W_1"], Fs)
    A = torch.softmax(torch.einsum("iv,vf,bfr->bir", V, s["W_2"], Fs), dim=-1)
    S_p = (A * S).sum(-1)
    pp1 = torch.einsum("ki,bi->bk", s["att"], S_p) + s["mask_bias"] * s["bias"]
    S2 = torch.einsum("bfr,fv,iv->bri", Fs, s["W_1_1"], V)
    A2 = torch.softmax(torch.einsum("iv,vf,bfr->bir", V, s["W_2_1"], Fs), dim=1)
    S_p2 = torch.einsum("bir,bri->bi", A2, S2)
    pp2 = torch.einsum("ki,bi->bk", s["att"], S_p2) + s["mask_bias"] * s["bias"]
    return w1 * pp1 + w2 * pp2


@pytest.fixture
def cfg():
    return run_config(load_method_config(TINY_CONFIG / "methods" / "msdn" / "SYNTH.yaml"), "main")


def test_imported_release_scores_equal_the_official_computation(tiny, tmp_path, cfg):
    state = release_state(tiny.store_path)
    ckpt = tmp_path / "SYNTH_MSDN_GZSL.pth"
    torch.save(state, ckpt)
    diagnostics = import_release(ckpt, tiny.store_path, cfg, "gzsl", tmp_path / "model.pt")
    saved = read_model_file(tmp_path / "model.pt")
    assert saved["weights"]["source"] == "official release" and len(saved["weights"]["sha256"]) == 64
    assert saved["provenance"]["weights"]["file"] == "SYNTH_MSDN_GZSL.pth"
    source = FeatureSource(tiny.store_path)
    model, _, _ = load_trained(saved, source, torch.device("cpu"))
    x = torch.from_numpy(source.store.read(source.test_unseen_loc[:6]))
    source.close()
    model.double()
    with torch.no_grad():
        ours = model.scores(x.double())
    w1, w2 = cfg["model"]["fusion"]
    theirs = official_scores(state, x, w1, w2)
    print(f"hand-built release: max |ours - official equations| = {(ours - theirs).abs().max().item():.3g}")
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-10), (ours - theirs).abs().max()
    assert torch.equal(ours.argmax(1), theirs.argmax(1))
    # diagnostics: our att and split are theirs here; no ImageNet file offline
    assert diagnostics["att"]["max_abs_difference"] < 1e-6
    assert diagnostics["split"]["seen_agree"] and diagnostics["split"]["unseen_agree"]
    assert diagnostics["bias"] == 1.0 and diagnostics["unused_parameters_zero"]
    assert json.loads(diagnostics_path(tmp_path / "model.pt").read_text()) == diagnostics


def test_diagnostics_find_a_different_split_att_and_backbone(tiny, tmp_path, cfg):
    state = release_state(tiny.store_path)
    state["mask_bias"][0, 0] *= -1  # their split has one class on the other side
    state["att"][1, 2] += 0.25
    state["W_3"][0, 0] = 0.5
    ckpt = tmp_path / "x.pth"
    torch.save(state, ckpt)
    reference = {
        "conv1.weight": state["resnet101.0.weight"].clone(),
        "layer1.0.conv1.weight": state["resnet101.4.0.conv1.weight"] + 0.125,
    }
    weights = tmp_path / "resnet101.pth"
    torch.save(reference, weights)
    d = import_release(ckpt, tiny.store_path, cfg, "czsl", tmp_path / "m.pt", imagenet_weights=weights)
    assert not (d["split"]["seen_agree"] and d["split"]["unseen_agree"])
    assert abs(d["att"]["max_abs_difference"] - 0.25) < 1e-6
    assert not d["unused_parameters_zero"] and d["unused_parameters_max_abs"]["W_3"] == 0.5
    bb = d["backbone"]
    assert bb["compared"] and not bb["equal"] and bb["max_abs_difference"] == pytest.approx(0.125)
    assert list(bb["differing_tensors"]) == ["layer1.0.conv1.weight"]
    assert torchvision_name("resnet101.7.2.bn3.running_var", BACKBONE, BACKBONE_CHILDREN) == "layer4.2.bn3.running_var"


def test_a_file_of_another_dataset_or_method_is_one_clear_error(tiny, tmp_path, cfg):
    state = release_state(tiny.store_path)
    state["att"] = torch.rand(200, 312)
    state["V"] = torch.rand(312, state["V"].shape[1])
    torch.save(state, tmp_path / "CUB_MSDN_GZSL.pth")
    with pytest.raises(
        ZslError,
        match=r"another dataset: it has 200 classes and 312 attributes; SYNTH .* has \d+ classes and \d+ attributes",
    ):
        import_release(tmp_path / "CUB_MSDN_GZSL.pth", tiny.store_path, cfg, "gzsl", tmp_path / "m.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(
        ZslError,
        match=r"not an MSDN release file: it lacks V, W_1, .* Expected the keys V, W_1, W_2, W_1_1, W_2_1, W_3, .*found fc.weight",
    ):
        import_release(tmp_path / "other.pth", tiny.store_path, cfg, "gzsl", tmp_path / "m.pt")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    code = main(
        [
            "import-official",
            "--method",
            "msdn",
            "--checkpoint",
            str(tmp_path / "junk.pth"),
            "--data",
            str(tiny.store_path),
            "--setting",
            "gzsl",
            "--out",
            str(tmp_path / "m.pt"),
            "--method-config",
            str(TINY_CONFIG / "methods/msdn/SYNTH.yaml"),
        ]
    )
    assert code == 2 and not (tmp_path / "m.pt").exists()


def test_import_then_evaluate_through_the_command_line(tiny, tmp_path, capsys):
    torch.save(release_state(tiny.store_path), tmp_path / "SYNTH_MSDN_CZSL.pth")
    args = ["--method-config", str(TINY_CONFIG / "methods/msdn/SYNTH.yaml")]
    assert (
        main(
            [
                "import-official",
                "--method",
                "msdn",
                "--checkpoint",
                str(tmp_path / "SYNTH_MSDN_CZSL.pth"),
                "--data",
                str(tiny.store_path),
                "--setting",
                "czsl",
                "--out",
                str(tmp_path / "model.pt"),
                *args,
            ]
        )
        == 0
    )
    assert "att vs our class-attribute matrix" in capsys.readouterr().out
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "model.pt"),
                "--data",
                str(tiny.store_path),
                "--metrics",
                str(tmp_path / "m.json"),
                "--curve",
                str(tmp_path / "c.csv"),
                "--predictions",
                str(tmp_path / "p.npz"),
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["run"] == "released_czsl" and m["reports"] == ["T1"] and "released weights" in m["table_row"]
    assert m["protocols"]["paper"]["evaluations"] == 1 and m["weights"]["file"] == "SYNTH_MSDN_CZSL.pth"
    assert 0 <= m["protocols"]["paper"]["T1"] <= 100


@pytest.mark.skipif(
    not os.environ.get("ZSL_OFFICIAL_MSDN"), reason="needs an official MSDN checkout: ZSL_OFFICIAL_MSDN=<dir>"
)
def test_the_official_models_own_state_dict_imports_to_the_same_scores(tiny, tmp_path, cfg):
    """Build the official root MSDN.py, save its state dict, import it: scores equal (float64)."""
    import sys
    import types

    checkout = Path(os.environ["ZSL_OFFICIAL_MSDN"])
    sys.path.insert(0, str(checkout))
    try:
        import torchvision

        real = torchvision.models.resnet101
        torchvision.models.resnet101 = lambda pretrained=False, **kw: real(weights=None)  # offline: no download
        import MSDN as official
    finally:
        sys.path.remove(str(checkout))
    source = FeatureSource(tiny.store_path)
    n_classes, n_att = np.asarray(source.att).shape
    w1, w2 = cfg["model"]["fusion"]
    conf = types.SimpleNamespace(
        dim_f=source.input_shape[0],
        dim_v=np.asarray(source.w2v_att).shape[1],
        num_class=n_classes,
        num_attribute=n_att,
        w1=w1,
        w2=w2,
    )
    torch.manual_seed(0)
    net = official.MSDN(
        conf,
        normalize_V=False,
        normalize_F=True,
        is_conservative=True,
        uniform_att_1=False,
        uniform_att_2=False,
        is_conv=False,
        is_bias=True,
    )
    torchvision.models.resnet101 = real
    with torch.no_grad():
        net.att.copy_(F.normalize(torch.as_tensor(np.asarray(source.att)).float(), dim=1))
        net.V.normal_()
        for p in (net.W_2, net.W_1_1, net.W_2_1):
            p.normal_(0, 0.05)
        mask = torch.full((1, n_classes), -1.0)
        mask[0, torch.as_tensor(source.unseen_classes).long()] = 1.0
        net.mask_bias.copy_(mask)
    torch.save(net.state_dict(), tmp_path / "official.pth")
    import_release(tmp_path / "official.pth", tiny.store_path, cfg, "gzsl", tmp_path / "model.pt")
    model, _, _ = load_trained(read_model_file(tmp_path / "model.pt"), source, torch.device("cpu"))
    x = torch.from_numpy(source.store.read(source.test_unseen_loc[:6])).double()
    source.close()
    net.double().eval()
    net.resnet101 = torch.nn.Identity()  # the head on our feature maps
    with torch.no_grad():
        theirs = net(x)["embed"]
        ours = model.double().scores(x)
    print(f"official state dict imported: max |ours - official| = {(ours - theirs).abs().max().item():.3g}")
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-10) and torch.equal(ours.argmax(1), theirs.argmax(1))


def test_release_files_are_checksummed_like_downloads(tiny, tmp_path):
    """First use records the SHA-256 (nothing is published); a changed file later fails with the
    download's message; the file is never fetched from its browser-only page."""
    import yaml

    from zslrepro.catalog import builtin_entries
    from zslrepro.config import method_releases
    from zslrepro.data.download import fetch, load_sources
    from zslrepro.errors import DatasetError
    from zslrepro.released import verify_release

    repo = Path(__file__).resolve().parents[1]
    sources = yaml.safe_load((repo / "config/downloads.yaml").read_text())
    byo = {k: v for k, v in sources["files"].items() if v.get("bring_your_own")}
    declared = {  # every file a method's schema declares (x-releases), and nothing else
        r["file"].format(dataset=d, SETTING=s.upper()): method
        for method in builtin_entries()
        if (r := method_releases(method))
        for d in r["datasets"]
        for s in r["settings"]
    }
    assert sorted(byo) == sorted(declared) and len(set(declared.values())) == 3
    assert all(byo[f]["extract_to"] == f"resources/released/{m}" for f, m in declared.items())
    ckpt = tmp_path / "CUB_MSDN_GZSL.pth"
    torch.save(release_state(tiny.store_path), ckpt)
    lock = tmp_path / "downloads.lock.yaml"
    verify_release(ckpt, repo / "config/downloads.yaml", lock)
    recorded = yaml.safe_load(lock.read_text())["CUB_MSDN_GZSL.pth"]
    verify_release(ckpt, repo / "config/downloads.yaml", lock)  # the same file passes
    torch.save(release_state(tiny.store_path, seed=5), ckpt)
    with pytest.raises(
        DatasetError, match=rf"CUB_MSDN_GZSL.pth failed verification \(sha256 \w+ instead of {recorded}\)"
    ):
        verify_release(ckpt, repo / "config/downloads.yaml", lock)
    source = load_sources(repo / "config/downloads.yaml")["CUB_MSDN_CZSL.pth"]
    with pytest.raises(DatasetError, match="needs a browser. Download it there and put it at"):
        fetch("CUB_MSDN_CZSL.pth", source, tmp_path / "CUB_MSDN_CZSL.pth", lock)


def test_an_imported_model_draws_and_scores_attention_like_a_trained_one(tiny, tmp_path, cfg):
    from zslrepro.data.localisation import read_truth, save_truth
    from zslrepro.evaluation.attention import attention_run

    torch.save(release_state(tiny.store_path), tmp_path / "SYNTH_MSDN_GZSL.pth")
    import_release(tmp_path / "SYNTH_MSDN_GZSL.pth", tiny.store_path, cfg, "gzsl", tmp_path / "model.pt")
    save_truth(read_truth(tiny.cfg, tiny.index.image_paths), tmp_path / "truth.npz")
    result = attention_run(
        tmp_path / "model.pt",
        tiny.store_path,
        tiny.index_path,
        tmp_path / "truth.npz",
        tiny.cfg,
        tmp_path / "attention",
    )
    assert result["run"] == "released_gzsl" and "A->V" in result["scores"]
    assert (tmp_path / "attention/figure.png").read_bytes()[:4] == b"\x89PNG"
