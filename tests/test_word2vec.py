"""The optional word-vector regeneration: cleaning rules, the word2vec binary reader, the sums."""

import gzip
import pickle

import numpy as np
import pytest

from zslrepro.cli import main
from zslrepro.data.word2vec import clean_awa2, clean_cub, clean_sun, cosine_per_attribute, read_vectors, regenerate


def test_cleaning_rules():
    assert clean_cub("has_bill_shape::curved_(up_or_down)") == "bill shape curved "
    assert clean_cub("has_upperparts_color::grey") == "upper parts color gray"
    assert clean_cub("has_wing_shape::rounded-wings") == "wing shape rounded wings"
    assert clean_cub("has_bill_shape::spatulate") == "bill shape broad"
    assert clean_awa2("quadrapedal") == "quadrupedal" and clean_awa2("newworld") == "new world"
    assert clean_sun("dirt/soil") == "dirt soil" and clean_sun("semi-enclosed area") == "semi enclosed area"
    assert clean_sun("man-made") == "man-made"  # out of vocabulary in GoogleNews: a zero vector


def write_model(path, words: dict[str, np.ndarray]) -> None:
    body = b"".join(w.encode() + b" " + v.astype("<f4").tobytes() + b"\n" for w, v in words.items())
    data = f"{len(words)} 4\n".encode() + body
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.mark.parametrize("name", ["model.bin", "model.gz"])
def test_reader_and_sums(tmp_path, name):
    rng = np.random.default_rng(0)
    words = {w: rng.normal(size=4).astype(np.float32) for w in ("bill", "shape", "curved", "upper", "parts")}
    path = tmp_path / name
    write_model(path, words)
    got = read_vectors(path, {"bill", "parts", "absent"})
    assert set(got) == {"bill", "parts"} and np.allclose(got["bill"], words["bill"])
    vecs, cleaned = regenerate(["has_bill_shape::curved_(up_or_down)", "has_nothing::known"], "cub", path)
    assert np.allclose(vecs[0], words["bill"] + words["shape"] + words["curved"])  # a sum, not a mean
    assert cleaned[1] == "nothing known" and not vecs[1].any()  # out of vocabulary: zero


def test_cosine_treats_shared_zero_rows_as_equal():
    a = np.array([[1.0, 0], [0, 0], [0, 0]])
    b = np.array([[2.0, 0], [0, 0], [1, 0]])
    assert cosine_per_attribute(a, b).tolist() == [1.0, 1.0, 0.0]


def test_cli_compares_with_the_published_vectors(tmp_path, capsys):
    rng = np.random.default_rng(1)
    words = {w: rng.normal(size=4).astype(np.float32) for w in ("black", "white", "new", "world")}
    write_model(tmp_path / "m.bin", words)
    (tmp_path / "predicates.txt").write_text("1\tblack\n2\twhite\n3\tnewworld\n")
    published = np.stack([words["black"], -words["white"], words["new"] + words["world"]]).astype(np.float64)
    (tmp_path / "pub.pkl").write_bytes(pickle.dumps(published))
    cfg = tmp_path / "AWA2.yaml"
    cfg.write_text(f"""name: AWA2
kind: xlsa17
xlsa17_dir: {tmp_path}
images_root: {tmp_path}
anchor: /JPEGImages/
w2v: {tmp_path}/pub.pkl
word2vec_cleaning: awa2
attribute_names: {{file: {tmp_path}/predicates.txt, format: numbered_lines}}
feature_stores: {{s: {{arch: resnet18, weights: null, resize: 32, crop: 32, layer: layer3}}}}
""")
    code = main(
        [
            "word-vectors",
            "--dataset-config",
            str(cfg),
            "--model",
            str(tmp_path / "m.bin"),
            "--out-pkl",
            str(tmp_path / "out.pkl"),
            "--report",
            str(tmp_path / "r.csv"),
        ]
    )
    assert code == 0 and "2 of 3 identical" in capsys.readouterr().out
    report = (tmp_path / "r.csv").read_text().splitlines()
    assert report[3].startswith("newworld,new world,1.0") and ",-1.0" in report[2]
