"""Acquisition and ingest of the real datasets, on small archives built here with exactly the real
layouts and path quirks: CUB's tgz (doubled CUB_200_2011 folder in xlsa17's paths, attributes.txt
beside the folder), AWA2's zip ('//' in the paths, '+' in class names), SUN's tar.gz (scene
sub-folders), xlsa17.zip (1-based uint8/uint16 indices, column vectors, attribute x class 'att').
Downloads come from file:// URLs."""

import io
import pickle
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from PIL import Image

from zslrepro.config import load_dataset_config
from zslrepro.data.download import fetch, file_digests, install, read_lock
from zslrepro.data.xlsa17 import ingest, write_xlsa17
from zslrepro.errors import DatasetError
from zslrepro.training.sources import make_split

REPO = Path(__file__).resolve().parents[1]
N_ATT = 6

LAYOUTS = {  # dataset: (class folders, foreign prefix, image-path pattern inside the archive)
    "CUB": (
        ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani"],
        "/BS/Deep_Fragments/work/MSc/CUB_200_2011/CUB_200_2011/images/",
        "CUB_200_2011/images/{folder}/{stem}.jpg",
    ),
    "AWA2": (
        ["antelope", "grizzly+bear", "killer+whale", "blue+whale"],
        "/BS/xian/work/data/Animals_with_Attributes2//JPEGImages/",
        "Animals_with_Attributes2/JPEGImages/{folder}/{stem}.jpg",
    ),
    "SUN": (
        ["a/abbey", "p/poolroom/home", "b/bedroom", "a/airport_terminal"],
        "/BS/Deep_Fragments/work/MSc/data/SUN/images/",
        "images/{folder}/{stem}.jpg",
    ),
}


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), seed * 40 % 255, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def build(dataset: str, root: Path) -> dict[str, Path]:
    """Archives of a 4-class dataset (3 seen, 1 unseen; 3 images each) in the real layout."""
    folders, prefix, pattern = LAYOUTS[dataset]
    members, image_files, labels = {}, [], []
    for c, folder in enumerate(folders):
        for j in range(3):
            stem = f"{folder.split('/')[-1].split('.')[-1]}_{10001 + j}"
            rel = pattern.format(folder=folder, stem=stem)
            members[rel] = jpeg(c * 3 + j)
            image_files.append(prefix + rel.split("images/", 1)[-1].split("JPEGImages/", 1)[-1])
            labels.append(c)
    labels = np.array(labels)
    att = np.abs(np.random.default_rng(0).normal(size=(N_ATT, 4)))
    splits = {
        "trainval_loc": [0, 1, 3, 4, 6, 7],
        "test_seen_loc": [2, 5, 8],
        "test_unseen_loc": [9, 10, 11],
        # as in the real release: every image of the train / validation classes, test_seen included
        "train_loc": [0, 1, 2, 3, 4, 5],
        "val_loc": [6, 7, 8],
    }
    xdir = root / "build/xlsa17/data" / dataset
    write_xlsa17(
        xdir,
        image_files,
        labels,
        splits,
        att / np.linalg.norm(att, axis=0),
        att * 100,
        [f.split("/")[-1] for f in folders],
    )
    names = [f"has_part::value_{i}" for i in range(N_ATT)]
    archives = {}
    if dataset == "CUB":
        members["attributes.txt"] = "".join(f"{i + 1} {n}\n" for i, n in enumerate(names)).encode()
        archives["CUB_200_2011.tgz"] = _tar(root / "CUB_200_2011.tgz", members, "w:gz")
    elif dataset == "AWA2":
        members["Animals_with_Attributes2/predicates.txt"] = "".join(
            f"{i + 1}\t{n}\n" for i, n in enumerate(names)
        ).encode()
        archives["AwA2-data.zip"] = _zip(root / "AwA2-data.zip", members)
    else:
        archives["SUNAttributeDB_Images.tar.gz"] = _tar(root / "SUNAttributeDB_Images.tar.gz", members, "w:gz")
        mat = root / "build/attributes.mat"
        cell = np.empty((N_ATT, 1), dtype=object)
        for i, n in enumerate(names):
            cell[i, 0] = np.array([n])
        scipy.io.savemat(mat, {"attributes": cell})
        archives["SUNAttributeDB.tar.gz"] = _tar(
            root / "SUNAttributeDB.tar.gz", {"SUNAttributeDB/attributes.mat": mat.read_bytes()}, "w:gz"
        )
    archives["xlsa17.zip"] = _zip(
        root / "xlsa17.zip", {f"xlsa17/data/{dataset}/{f.name}": f.read_bytes() for f in xdir.iterdir()}
    )
    pkl = root / f"{dataset}_attribute.pkl"
    pkl.write_bytes(pickle.dumps(np.random.default_rng(1).normal(size=(N_ATT, 300))))
    archives[pkl.name] = pkl
    return archives


def _tar(path: Path, members: dict[str, bytes], mode: str) -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def sources_for(archives: dict[str, Path], workdir: Path) -> dict:
    """The shipped descriptors, pointed at the local archives, without published sums or sizes.

    The test's xlsa17.zip holds one dataset only, so it provides that dataset's files only."""
    shipped = yaml.safe_load((REPO / "config/downloads.yaml").read_text())["files"]
    out = {}
    for name, path in archives.items():
        s = dict(shipped[name], urls=[path.as_uri()], size=None, md5=None, sha256=None)
        if name == "xlsa17.zip":
            inside = zipfile.ZipFile(path).namelist()
            s["provides"] = [f"resources/datasets/{m.rsplit('/', 1)[0]}" for m in inside if m.endswith("res101.mat")]
        s["extract_to"] = str(workdir / s["extract_to"])
        s["provides"] = [str(workdir / p) for p in s["provides"]]
        out[name] = s
    return out


def dataset_config(dataset: str, workdir: Path) -> dict:
    cfg = load_dataset_config(REPO / f"config/datasets/{dataset}.yaml")
    for key in ("xlsa17_dir", "images_root", "w2v"):
        cfg[key] = str(workdir / cfg[key])
    cfg["attribute_names"]["file"] = str(workdir / cfg["attribute_names"]["file"])
    cfg["expected"] = {
        "images": 12,
        "classes": 4,
        "seen_classes": 3,
        "unseen_classes": 1,
        "attributes": N_ATT,
        "trainval": 6,
        "test_seen": 3,
        "test_unseen": 3,
    }
    return cfg


@pytest.mark.parametrize("dataset", ["CUB", "AWA2", "SUN"])
def test_download_verify_extract_ingest(dataset, tmp_path):
    archives = build(dataset, tmp_path / "served")
    work = tmp_path / "work"
    lock = work / "downloads.lock.yaml"
    sources = sources_for(archives, work)
    for name, source in sources.items():
        dest = work / "resources/downloads" / name
        fetch(name, source, dest, lock, log=lambda *_: None)
        install(name, source, dest, work / f"resources/installed/{name}.ok", lock)
        assert (work / f"resources/installed/{name}.ok").exists()
        assert read_lock(lock)[name] == file_digests(archives[name])["sha256"]  # first download recorded
    assert not list(work.rglob(".extracting-*")) and not list(work.rglob("*.part"))
    ds = ingest(dataset_config(dataset, work))
    assert ds.summary()["images"] == 12 and len(ds.unseen_classes) == 1
    assert all("//" not in p for p in ds.image_paths)
    if dataset == "AWA2":
        assert ds.image_paths[3] == "grizzly+bear/grizzly+bear_10001.jpg"
    if dataset == "SUN":
        assert ds.image_paths[3] == "p/poolroom/home/home_10001.jpg"
    assert ds.labels.dtype == np.int64 and ds.trainval_loc.tolist() == [0, 1, 3, 4, 6, 7]
    # the validation split leaves out the test_seen images that train_loc / val_loc carry
    split = make_split(ds, "validation", holdout_fraction=0.5)
    used = np.concatenate([split.trainval_loc, split.test_seen_loc, split.test_unseen_loc])
    assert split.dropped_test_images == 3 and sorted(used.tolist()) == [0, 1, 3, 4, 6, 7]


def test_later_download_must_match_the_recorded_checksum(tmp_path):
    archives = build("CUB", tmp_path / "served")
    work = tmp_path / "work"
    lock = work / "lock.yaml"
    source = sources_for(archives, work)["CUB_200_2011.tgz"]
    dest = work / "resources/downloads/CUB_200_2011.tgz"
    fetch("CUB_200_2011.tgz", source, dest, lock, log=lambda *_: None)
    install("CUB_200_2011.tgz", source, dest, work / "m.ok", lock)
    # the server now serves other bytes: the download is refused and moved aside
    _tar(archives["CUB_200_2011.tgz"], {"CUB_200_2011/images/x/y.jpg": b"other"}, "w:gz")
    dest.unlink()
    with pytest.raises(DatasetError, match=r"failed verification \(sha256"):
        fetch("CUB_200_2011.tgz", source, dest, lock, log=lambda *_: None)
    assert not dest.exists() and list(dest.parent.glob("CUB_200_2011.tgz.bad-*"))


def test_published_checksum_mismatch_is_moved_aside(tmp_path):
    archives = build("CUB", tmp_path / "served")
    source = dict(sources_for(archives, tmp_path)["CUB_attribute.pkl"], md5="0" * 32)
    dest = tmp_path / "dl/CUB_attribute.pkl"
    with pytest.raises(DatasetError, match="md5 .* instead of 0000"):
        fetch("CUB_attribute.pkl", source, dest, tmp_path / "lock.yaml", log=lambda *_: None)
    assert not dest.exists() and len(list(dest.parent.glob("CUB_attribute.pkl.bad-*"))) == 1


def test_truncated_archive_is_refused_and_not_recorded(tmp_path):
    archives = build("AWA2", tmp_path / "served")
    path = archives["AwA2-data.zip"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    work = tmp_path / "work"
    lock = work / "lock.yaml"
    source = sources_for(archives, work)["AwA2-data.zip"]
    dest = work / "resources/downloads/AwA2-data.zip"
    fetch("AwA2-data.zip", source, dest, lock, log=lambda *_: None)  # nothing to verify against yet
    with pytest.raises(DatasetError, match="could not be extracted"):
        install("AwA2-data.zip", source, dest, work / "m.ok", lock)
    assert not (work / "m.ok").exists() and "AwA2-data.zip" not in read_lock(lock)
    assert not (work / "resources/datasets/AWA2/Animals_with_Attributes2").exists()
    assert not list(work.rglob(".extracting-*")) and list(dest.parent.glob("AwA2-data.zip.bad-*"))


def test_offline_error_names_the_file_the_place_and_the_checksum(tmp_path):
    source = yaml.safe_load((REPO / "config/downloads.yaml").read_text())["files"]["CUB_200_2011.tgz"]
    source = dict(source, urls=["http://127.0.0.1:9/CUB_200_2011.tgz", (tmp_path / "absent.tgz").as_uri()])
    dest = tmp_path / "resources/downloads/CUB_200_2011.tgz"
    with pytest.raises(DatasetError) as err:
        fetch("CUB_200_2011.tgz", source, dest, tmp_path / "lock.yaml", attempts=1, log=lambda *_: None)
    msg = str(err.value)
    assert "could not download CUB_200_2011.tgz" in msg and str(dest) in msg
    assert "md5 97eceeb196236b17998738112f37df78" in msg


def test_bring_your_own_archive_is_verified_not_downloaded(tmp_path):
    archives = build("CUB", tmp_path / "served")
    source = dict(
        sources_for(archives, tmp_path)["CUB_attribute.pkl"],
        urls=["http://127.0.0.1:9/nothing"],
        sha256=file_digests(archives["CUB_attribute.pkl"])["sha256"],
    )
    dest = tmp_path / "dl/CUB_attribute.pkl"
    dest.parent.mkdir()
    shutil.copy(archives["CUB_attribute.pkl"], dest)
    messages = []
    fetch("CUB_attribute.pkl", source, dest, tmp_path / "lock.yaml", attempts=1, log=messages.append)
    assert messages == [f"{dest} is present: verifying it instead of downloading"]


def _workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text("datasets: [CUB]\nmethods: [msdn]\nreplicates: 1\n")
    return tmp_path


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """The workflow on ``workdir``, without the repository's default profile."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile")]
    return subprocess.run(
        [*command, "--directory", str(workdir), *args, "--workflow-profile", "none"], capture_output=True, text=True
    )


def _dry_run(workdir: Path) -> str:
    run = _snakemake(workdir, "-n")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout


def test_workflow_plans_downloads_only_for_what_is_missing(tmp_path):
    plan = _dry_run(_workdir(tmp_path))
    for name in ("CUB_200_2011.tgz", "xlsa17.zip", "CUB_attribute.pkl"):
        assert f"resources/downloads/{name}" in plan and f"resources/installed/{name}.ok" in plan
    # bring your own extracted tree: put the files where 'provides' says; nothing is downloaded
    archives = build("CUB", tmp_path / "served")
    for name, src in sources_for(archives, tmp_path).items():
        dest = tmp_path / "resources/downloads" / name
        fetch(name, src, dest, tmp_path / "lock.yaml", log=lambda *_: None)
        install(name, src, dest, tmp_path / "unused.ok", tmp_path / "lock.yaml")
    shutil.rmtree(tmp_path / "resources/downloads")
    shutil.rmtree(tmp_path / "resources/installed", ignore_errors=True)
    plan = _dry_run(tmp_path)
    assert "rule download_file" not in plan and "rule extract_download" not in plan
    assert "rule verify_user_files" in plan and "rule ingest_dataset" in plan


def _mini_cub_workdir(tmp_path: Path) -> Path:
    """config/ for the real-layout mini CUB: its downloads served from file:// archives, a small
    random-weight backbone under the store name MSDN's CUB config reads, and a two-epoch MSDN run."""
    workdir = _workdir(tmp_path / "work")
    archives = build("CUB", tmp_path / "served")
    downloads = yaml.safe_load((workdir / "config/downloads.yaml").read_text())
    for name, path in archives.items():
        downloads["files"][name].update(urls=[path.as_uri()], size=None, md5=None, sha256=None)
    downloads["files"]["xlsa17.zip"]["provides"] = ["resources/datasets/xlsa17/data/CUB"]
    (workdir / "config/downloads.yaml").write_text(yaml.safe_dump(downloads))
    cub = yaml.safe_load((workdir / "config/datasets/CUB.yaml").read_text())
    cub["expected"] = dataset_config("CUB", workdir)["expected"]
    cub["feature_stores"] = {
        "res101_448": {
            "arch": "resnet18",
            "weights": None,
            "resize": 32,
            "crop": 32,
            "layer": "layer3",
            "batch_size": 6,
        }
    }
    (workdir / "config/datasets/CUB.yaml").write_text(yaml.safe_dump(cub))
    msdn = yaml.safe_load((REPO / ".test/config/methods/msdn/SYNTH.yaml").read_text())
    msdn.update(dataset="CUB", feature_store="res101_448", schedule={"epochs": 2, "batch_size": 3, "sampler": "iid"})
    (workdir / "config/methods/msdn/CUB.yaml").write_text(yaml.safe_dump(msdn))
    (workdir / "config/downloads.lock.yaml").unlink(missing_ok=True)
    return workdir


@pytest.mark.slow
def test_real_layout_run_then_nothing_to_do_twice(tmp_path):
    """download -> extract -> ingest -> features -> train -> tables on real-layout archives; then the
    plan is empty, twice (the DAG does not depend on which files exist at parse time)."""
    workdir = _mini_cub_workdir(tmp_path)
    run = _snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for rule in ("download_file", "extract_download", "ingest_dataset", "extract_features", "train_method"):
        assert f"rule {rule}:" in run.stdout + run.stderr, rule
    assert (workdir / "results/metrics/msdn/CUB/main/rep0.json").exists()
    for _ in range(2):
        again = _snakemake(workdir, "-n")
        assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


def test_user_files_are_verified_and_marked(tmp_path):
    from zslrepro.data.download import verify_user_files

    (tmp_path / "images").mkdir()
    (tmp_path / "images/a.jpg").write_bytes(b"x" * 10)
    (tmp_path / "att_splits.mat").write_bytes(b"y" * 5)
    found = verify_user_files([tmp_path / "images", tmp_path / "att_splits.mat"], tmp_path / "m.ok")
    assert found[str(tmp_path / "images")] == {"files": 1} and found[str(tmp_path / "att_splits.mat")]["size"] == 5
    assert (tmp_path / "m.ok").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is missing or empty"):
        verify_user_files([tmp_path / "empty"], tmp_path / "m2.ok")
    assert not (tmp_path / "m2.ok").exists()


def test_full_disk_during_extraction_keeps_the_verified_archive(tmp_path, monkeypatch):
    import errno

    from zslrepro.data import download

    archives = build("CUB", tmp_path / "served")
    source = sources_for(archives, tmp_path)["CUB_200_2011.tgz"]

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "extract_archive", no_space)
    archive = archives["CUB_200_2011.tgz"]
    with pytest.raises(DatasetError, match="No space left on device.*is kept"):
        install("CUB_200_2011.tgz", source, archive, tmp_path / "m.ok", tmp_path / "lock.yaml")
    assert archive.exists() and not list(archive.parent.glob("*.bad-*")) and not (tmp_path / "m.ok").exists()


def test_offline_workflow_run_fails_with_one_clear_message(tmp_path):
    workdir = _workdir(tmp_path)
    downloads = yaml.safe_load((workdir / "config/downloads.yaml").read_text())
    for entry in downloads["files"].values():
        entry["urls"] = [(tmp_path / "nowhere" / "x").as_uri()]
    (workdir / "config/downloads.yaml").write_text(yaml.safe_dump(downloads))
    run = _snakemake(workdir, "--cores", "1", "resources/downloads/CUB_attribute.pkl")
    log = (workdir / "logs/download_file/CUB_attribute.pkl.log").read_text()
    assert run.returncode != 0 and "Traceback" not in log
    assert log.splitlines()[-1].startswith("zslrepro: error: could not download CUB_attribute.pkl")
    assert "resources/downloads/CUB_attribute.pkl" in log.splitlines()[-1]
    assert "sha256 35261deef657d26c" in log


def test_optional_word_vector_stage_is_planned_only_when_switched_on(tmp_path):
    workdir = _workdir(tmp_path)
    assert "regenerate_word_vectors" not in _dry_run(workdir)
    (workdir / "config/config.yaml").write_text(
        "datasets: [CUB]\nmethods: [msdn]\nreplicates: 1\nregenerate_word_vectors: true\n"
    )
    plan = _dry_run(workdir)
    assert "rule regenerate_word_vectors" in plan
    assert "resources/downloads/word2vec-google-news-300.gz" in plan


class _RangeServer:
    """A loopback HTTP server for one file, honouring Range requests; the first response is cut
    off after ``cut`` bytes, as a dropped connection would."""

    def __init__(self, data: bytes, cut: int):
        import http.server
        import threading

        server_self = self
        self.requests: list[str | None] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server_self.requests.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if len(server_self.requests) == 1:
                    self.wfile.write(body[:cut])  # then drop the connection
                    self.wfile.flush()
                    self.connection.shutdown(2)
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/file.bin"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_interrupted_http_download_resumes_where_it_stopped(tmp_path):
    data = np.random.default_rng(0).bytes(300_000)
    server = _RangeServer(data, cut=100_000)
    try:
        source = {
            "urls": [server.url],
            "kind": "file",
            "size": len(data),
            "md5": None,
            "sha256": file_digests_bytes(data),
            "extract_to": str(tmp_path),
            "provides": [str(tmp_path)],
        }
        dest = tmp_path / "file.bin"
        fetch("file.bin", source, dest, tmp_path / "lock.yaml", log=lambda *_: None)
    finally:
        server.close()
    assert dest.read_bytes() == data and not (tmp_path / "file.bin.part").exists()
    assert server.requests[0] is None and server.requests[1] == "bytes=100000-"  # resumed, not restarted


def file_digests_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
