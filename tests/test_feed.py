"""The feature feed: rows read in final order, prefetched by a thread that never outlives its
consumer, held in RAM or streamed, and training numbers bitwise equal to plain synchronous reads."""

from __future__ import annotations

import argparse
import threading
from contextlib import closing

import h5py
import numpy as np
import pytest
import torch

from zslrepro.features import feed
from zslrepro.features import store as store_module
from zslrepro.features.store import FeatureStore
from zslrepro.training.sources import FeatureSource
from zslrepro.training.trainer import train


def feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "zslrepro-feed"]


def rows_as_values(indices: np.ndarray, out: np.ndarray) -> None:
    """A reader whose row i is filled with the value i: the batch shows which rows arrived where."""
    out[: len(indices)] = np.asarray(indices, dtype=out.dtype).reshape(-1, *([1] * (out.ndim - 1)))


def test_preadv_reads_rows_in_the_order_asked(tiny, monkeypatch):
    with h5py.File(tiny.store_path) as h5:
        every_row = h5["features"][()]
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(len(every_row))[:20], [3, 4, 5, 6], [9, 9], [0]])
    with FeatureStore(tiny.store_path) as store:
        assert store._rows is not None  # the contiguous path, not the h5py fallback
        out = np.full((len(idx) + 3, *store.shape), np.nan, dtype=store.dtype)
        store.read_into(idx, out)
        assert np.array_equal(out[: len(idx)], every_row[idx])
        assert np.isnan(out[len(idx) :]).all()  # nothing written past the batch
        monkeypatch.setattr(store_module, "IOV_MAX", 2)  # a run longer than one preadv may take
        again = np.empty_like(out)
        store.read_into(np.arange(7), again)
        assert np.array_equal(again[:7], every_row[:7])
        assert np.array_equal(store.read(idx), every_row[idx].astype(np.float32))


def test_prefetched_batches_arrive_in_order_as_float32():
    batches = [np.array([5, 1, 7]), np.array([2]), np.array([0, 0, 9, 4])]
    got = [x.clone() for x in feed.prefetched(rows_as_values, batches, (2, 3), np.float16)]
    assert [g.dtype for g in got] == [torch.float32] * 3
    assert [g[:, 0, 0].tolist() for g in got] == [b.tolist() for b in batches]
    assert not feed_threads()


def test_an_error_in_the_reader_surfaces_in_the_consumer_and_stops_the_thread():
    def failing(indices, out):
        if indices[0] == 3:
            raise OSError("short read from the feature store at row 3")
        rows_as_values(indices, out)

    seen = []
    with pytest.raises(OSError, match="row 3"):
        for x in feed.prefetched(failing, [np.array([k]) for k in range(6)], (4,), np.float16):
            seen.append(int(x[0, 0]))
    assert seen == [0, 1, 2]
    assert not feed_threads()


def test_no_thread_is_left_when_the_consumer_stops_early_or_is_interrupted():
    batches = [np.array([k]) for k in range(50)]
    with closing(feed.prefetched(rows_as_values, batches, (4,), np.float16, depth=3)) as xs:
        for k, _ in zip(range(2), xs):
            pass
    assert not feed_threads()
    with (
        pytest.raises(KeyboardInterrupt),  # Ctrl-C during a step
        closing(feed.prefetched(rows_as_values, batches, (4,), np.float16)) as xs,
    ):
        for _x in xs:
            raise KeyboardInterrupt
    assert not feed_threads()


def test_a_batch_stays_intact_until_the_next_is_asked_for():
    """The reader runs ahead into other slots: what was yielded is not overwritten under the step."""
    batches = [np.array([k] * 3) for k in range(12)]
    xs = feed.prefetched(rows_as_values, batches, (8,), np.float16, depth=2)
    for k, x in enumerate(xs):
        before = x.clone()
        threading.Event().wait(0.01)  # the reader fills the queue meanwhile
        assert torch.equal(x, before) and int(x[0, 0]) == k


def test_auto_cache_holds_rows_when_they_fit_and_streams_when_not(tiny, monkeypatch):
    source = FeatureSource(tiny.store_path, cache="auto")
    assert source.expect(tiny.index.trainval_loc)["cache"] == "ram"
    source.close()
    monkeypatch.setattr(feed, "available_memory", lambda: 1000)
    source = FeatureSource(tiny.store_path, cache="auto")
    said = source.expect(tiny.index.trainval_loc)
    assert said["cache"] == "stream" and said["requested"] == "auto" and said["bytes"] > 500
    source.close()
    source = FeatureSource(tiny.store_path, cache="ram")  # asked for explicitly: held whatever the cap
    assert source.expect(tiny.index.trainval_loc)["cache"] == "ram"
    with pytest.raises(KeyError, match="not held"):
        next(source.iter_batches(tiny.index.test_unseen_loc, 4))
    source.close()


def test_feed_settings_travel_as_options_and_are_checked():
    """The workflow's options (config `features`, --cores) parse back into the same settings; a
    bad value stops with the config key's name."""
    from zslrepro.errors import ConfigError
    from zslrepro.jobfeed import JobFeed, add_feed_arguments, feed_flags, feed_from_args

    flags = feed_flags({"cache": "stream", "ram_fraction": 0.25}, cores=6)
    assert flags == "--feature-cache stream --ram-fraction 0.25 --cores 6"
    parser = argparse.ArgumentParser()
    add_feed_arguments(parser)
    args = parser.parse_args([*flags.split(), "--threads", "2", "--compute-threads", "1"])
    assert feed_from_args(args) == JobFeed("stream", 0.25, threads=2, cores=6) and args.compute_threads == 1
    assert feed_from_args(parser.parse_args([])) == JobFeed()  # by hand: auto, 0.5, no budget
    assert "--cores" not in feed_flags({}, None)  # a dry run or a cluster submission: no cap
    with pytest.raises(ConfigError, match="auto, ram, stream"):
        JobFeed("disk")
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        feed_flags({"ram_fraction": 2.0}, None)


class PlainSource(FeatureSource):
    """The simplest possible reader, as the code before the feed read: h5py rows, synchronously,
    a new float32 array per batch. The reference the fed runs must equal bit for bit."""

    def _plain(self, idx: np.ndarray) -> torch.Tensor:
        uniq, inverse = np.unique(idx, return_inverse=True)
        return torch.from_numpy(self.store.features[uniq][inverse].astype(np.float32))

    def train_batches(self, plan, seeds, device=None):
        for idx in plan:
            yield self._plain(idx), torch.from_numpy(self.labels[idx])

    def iter_batches(self, indices, batch_size, device=None):
        for s in range(0, len(indices), batch_size):
            yield self._plain(np.asarray(indices[s : s + batch_size]))


@pytest.mark.parametrize("method", ["msdn", "dedn"])
def test_training_through_the_feed_equals_plain_reads_bit_for_bit(tiny, tmp_path, method):
    from conftest import TINY_CONFIG

    from zslrepro.config import apply_overrides, load_method_config, run_config

    base = load_method_config(TINY_CONFIG / "methods" / method / "SYNTH.yaml")
    cfg = run_config(base, next(iter(base["runs"])))
    assert cfg["feature_store"] == "rn18rand_64"  # the tiny fixture's store
    cfg = apply_overrides(cfg, {"schedule.epochs": 2})
    runs = {}
    for name, source in (
        ("plain", PlainSource(tiny.store_path)),
        ("stream", FeatureSource(tiny.store_path, cache="stream")),
        ("ram", FeatureSource(tiny.store_path, cache="ram")),
    ):
        path = train(cfg, source, tmp_path / name, device="cpu", log=lambda *_: None)
        source.close()
        runs[name] = torch.load(path, weights_only=False)
        runs[name]["history"] = (tmp_path / name / "history.jsonl").read_text()
    plain = runs["plain"]
    for name in ("stream", "ram"):
        assert runs[name]["history"] == plain["history"]
        assert all(torch.equal(runs[name]["model"][k], plain["model"][k]) for k in plain["model"])
        assert runs[name]["provenance"]["feed"]["cache"] == name
    assert not feed_threads()


def test_loader_workers_follow_the_budget_on_cpu_and_the_machine_on_a_gpu(monkeypatch):
    """Compute threads stay as given; on a GPU the loader workers take every CPU the job may use
    (affinity, capped by the workflow's --cores) but one, up to the config's num_workers."""
    from zslrepro import runtime
    from zslrepro.jobfeed import JobFeed

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(16)))
    job = JobFeed(threads=2)
    assert runtime.loader_workers(8, None, job) == 1 and runtime.loader_workers("auto", None, job) == 1
    assert runtime.loader_workers(0, None, job) == 0
    assert runtime.loader_workers("auto", "cuda", job) == 15 and runtime.loader_workers(8, "cuda:0", job) == 8
    job = JobFeed(threads=2, cores=6)  # snakemake --cores 6
    assert runtime.loader_workers("auto", "cuda", job) == 5 and runtime.loader_workers("auto", "cpu", job) == 1
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2})  # SLURM --cpus-per-task 3
    assert runtime.loader_workers("auto", "cuda", job) == 2


def test_compute_threads_stay_fixed_when_a_job_gets_more_cpus():
    """A cluster job given 8 CPUs computes with the workflow's 2 threads (the reference's numerics);
    its loader budget is the 8."""
    from zslrepro import runtime

    before = torch.get_num_threads()
    from zslrepro.jobfeed import JobFeed

    try:
        assert runtime.apply_threads(8, compute_threads=2) == 2
        assert runtime.loader_workers("auto", None, JobFeed(threads=8)) == 7
        assert runtime.apply_threads(1, compute_threads=2) == 1  # a one-CPU job: one thread
        assert runtime.apply_threads(3) == 3  # by hand, no workflow: as asked
    finally:
        torch.set_num_threads(before)


def test_feature_level_jobs_do_not_load_torchvision():
    """Importing torchvision costs each job about 1.5 s on the 2-core machine (the main job runs
    some sixty): the train, evaluate and attention paths of a feature-level run import it only
    where an image transform or a torchvision network is built."""
    import subprocess
    import sys

    code = (
        "import sys; import zslrepro.cli, zslrepro.training.trainer, zslrepro.evaluation.evaluate, "
        "zslrepro.evaluation.attention, zslrepro.training.runfiles; from zslrepro.catalog import builtin_entries; "
        "import importlib; [importlib.import_module(e.module) for e in builtin_entries().values()]; "
        "print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
