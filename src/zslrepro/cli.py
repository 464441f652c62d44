"""The command-line interface the Snakemake rules call: ``python -m zslrepro <command> ...``.

Each command does one step of the pipeline and can be run by hand. Errors a user can fix are
printed as one line (``zslrepro: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .errors import ZslError
from .jobfeed import add_feed_arguments, feed_from_args

COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}  # name -> (help, its arguments, its handler)


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a handler as ``python -m zslrepro <name>``, with the function that adds its arguments."""

    def wrap(handler):
        COMMANDS[name] = (help, arguments or (lambda p: None), handler)
        return handler

    return wrap


DATA_HELP = "the run's feature store (.h5), or the dataset index (.npz) for runs that train from images"


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of the commands that run a method config (train, artefact, tune)."""
    p.add_argument("--method-config", required=True)
    p.add_argument("--run", default="main", help="which of the config's named runs")
    p.add_argument("--data", "--features", dest="data", required=True, help=DATA_HELP)
    p.add_argument("--images-root", default=None, help="the dataset's image folder (runs that train from images)")
    p.add_argument(
        "--validation-point",
        type=int,
        default=None,
        help="train point K of the config's tuning grid on the validation split",
    )
    p.add_argument("--selected", default=None, help="values chosen on the validation split (tune's output)")
    p.add_argument("--device", default=None)
    add_feed_arguments(p)


@command("methods", "list the registered methods with their origin (package and version)")
def cmd_methods(args) -> None:
    """Every registered method with where it comes from (zslrepro.catalog), without importing any."""
    from .catalog import catalog

    rows = [("method", "origin", "module", "schema", "default configs")]
    for e in catalog().values():
        configs = ", ".join(sorted(p.stem for p in e.default_configs.glob("*.yaml"))) or "-"
        rows.append(
            (e.name, f"{e.origin} {e.version}" + ("" if e.builtin else " (plugin)"), e.module, str(e.schema), configs)
        )
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _synthesize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-config", required=True)
    p.add_argument("--out", required=True, help="folder to write the dataset into")


@command("synthesize", "generate the embedded synthetic dataset (xlsa17 layout)", _synthesize_arguments)
def cmd_synthesize(args) -> None:
    from .config import load_dataset_config
    from .data.synthetic import SyntheticSpec, generate

    cfg = load_dataset_config(args.dataset_config)
    if cfg["kind"] != "synthetic":
        raise ZslError(f"{args.dataset_config} describes a real dataset; it cannot be synthesised")
    summary = generate(SyntheticSpec(**cfg["synthetic"]), args.out)
    print(f"synthetic dataset written to {args.out}: {summary}")


def _download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--sources", required=True, help="config/downloads.yaml")
    p.add_argument("--lock", required=True, help="lock file of recorded SHA-256 sums")
    p.add_argument("--out", required=True)


@command("download", "download (or verify a present) file of config/downloads.yaml", _download_arguments)
def cmd_download(args) -> None:
    from pathlib import Path

    from .data.download import fetch, load_sources, source_of

    source = source_of(load_sources(args.sources), args.name)
    fetch(args.name, source, Path(args.out), Path(args.lock))
    print(f"{args.out}: verified")


def _extract_archive_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--sources", required=True)
    p.add_argument("--lock", required=True)
    p.add_argument("--archive", required=True)
    p.add_argument("--marker", required=True)


@command("extract-archive", "extract a verified download into place, marker last", _extract_archive_arguments)
def cmd_extract_archive(args) -> None:
    from pathlib import Path

    from .data.download import install, load_sources, source_of

    source = source_of(load_sources(args.sources), args.name)
    install(args.name, source, Path(args.archive), Path(args.marker), Path(args.lock))
    print(f"{args.name}: in place under {source['extract_to']}")


def _verify_files_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+")
    p.add_argument("--marker", required=True)
    p.add_argument("--sources", default=None, help="config/downloads.yaml: files it provides must match its checksums")
    p.add_argument("--lock", default="config/downloads.lock.yaml", help="first-use checksums recorded earlier")


@command("verify-files", "check dataset files the user brought; write a marker", _verify_files_arguments)
def cmd_verify_files(args) -> None:
    from pathlib import Path

    from .data.download import load_sources, verify_user_files

    sources = load_sources(args.sources) if args.sources else None
    found = verify_user_files(args.files, Path(args.marker), sources, Path(args.lock))
    print(f"{len(found)} file(s) and folder(s) of your own verified: {args.marker}")


def _word_vectors_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-config", required=True)
    p.add_argument("--model", required=True, help="GoogleNews word2vec binary (.bin or .gz)")
    p.add_argument("--out-pkl", required=True)
    p.add_argument("--report", required=True, help="CSV of the cosine per attribute")


@command("word-vectors", "regenerate attribute word vectors from word2vec; compare", _word_vectors_arguments)
def cmd_word_vectors(args) -> None:
    from .config import load_dataset_config
    from .data.word2vec import compare_with_published

    cfg = load_dataset_config(args.dataset_config)
    if not cfg.get("word2vec_cleaning"):
        raise ZslError(f"{args.dataset_config} names no word2vec_cleaning rules")
    cos = compare_with_published(cfg, args.model, args.out_pkl, args.report)
    print(
        f"{cfg['name']}: cosine to the published vectors: min {cos.min():.4f}, mean {cos.mean():.4f}; "
        f"{int((cos > 0.9999).sum())} of {len(cos)} identical"
    )


def _ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-config", required=True)
    p.add_argument("--out", required=True, help="index .npz")
    p.add_argument("--summary", required=True, help="counts .json")
    p.add_argument("--localisation", help="ground truth for the attention scores .npz (default: beside --out)")


@command("ingest", "read and check xlsa17 files; write the dataset index", _ingest_arguments)
def cmd_ingest(args) -> None:
    from .config import load_dataset_config
    from .data.localisation import read_truth, save_truth
    from .data.xlsa17 import ingest
    from .io import write_json

    cfg = load_dataset_config(args.dataset_config)
    ds = ingest(cfg)
    truth = read_truth(cfg, ds.image_paths)
    ds.save(args.out)
    save_truth(truth, args.localisation or os.path.join(os.path.dirname(args.out), "localisation.npz"))
    write_json(args.summary, ds.summary())
    print(
        f"ingested {cfg['name']}: {ds.summary()}; localisation ground truth: {truth['kind']}"
        + (f" ({truth['reason']})" if truth["kind"] == "none" else "")
    )


def _set_aside_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("--marker", required=True)


@command(
    "set-aside-store", "rename a damaged feature store <store>.bad-<time>; write a marker", _set_aside_store_arguments
)
def cmd_set_aside_store(args) -> None:
    from pathlib import Path

    from .features.store import set_aside_if_damaged
    from .io import write_text

    aside = set_aside_if_damaged(Path(args.store))
    write_text(args.marker, f"{args.store}: {'moved aside to ' + str(aside) if aside else 'readable, left in place'}\n")
    print(f"{args.store}: moved aside to {aside}; it is extracted anew" if aside else f"{args.store} is readable")


def _extract_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-config", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--store", required=True, help="feature store name in the dataset config")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=None)
    add_feed_arguments(p)


@command("extract", "extract backbone feature maps into an HDF5 feature store", _extract_arguments)
def cmd_extract(args) -> None:
    from .config import load_dataset_config
    from .data.xlsa17 import IngestedDataset
    from .features.extract import extract

    cfg = load_dataset_config(args.dataset_config)
    if args.store not in cfg["feature_stores"]:
        raise ZslError(
            f"{args.dataset_config} has no feature store {args.store!r} (known: {', '.join(cfg['feature_stores'])})"
        )
    extract(
        IngestedDataset.load(args.index),
        cfg["images_root"],
        cfg["feature_stores"][args.store],
        args.out,
        device=args.device,
        feed=feed_from_args(args),
    )


def _run_config(args) -> dict:
    """The run's config: the file's named run, a validation point of its tuning grid, or the run
    with the values chosen on the validation split (``--selected``)."""
    from .config import load_method_config, run_config, validation_config
    from .evaluation.tuning import apply_selection

    cfg = run_config(load_method_config(args.method_config), args.run, source=args.method_config)
    if getattr(args, "validation_point", None) is not None:
        cfg = validation_config(cfg, args.validation_point)
    if getattr(args, "selected", None):
        cfg = apply_selection(cfg, args.selected)
    return cfg


def _artefacts(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        name, sep, path = pair.partition("=")
        if not sep:
            raise ZslError(f"--artefact expects NAME=PATH, got {pair!r}")
        out[name] = path
    return out


def _train_arguments(p: argparse.ArgumentParser) -> None:
    _run_arguments(p)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--replicate", type=int, default=0, help="replicate k runs with the config's seed + k")
    p.add_argument("--artefact", action="append", help="NAME=PATH of a file a method needs (e.g. channel_groups)")


@command("train", "train a method (resumes from a checkpoint)", _train_arguments)
def cmd_train(args) -> None:
    from .training.sources import open_source
    from .training.trainer import train

    cfg = _run_config(args)
    source = open_source(cfg, args.data, args.images_root, feed_from_args(args))
    try:
        path = train(
            cfg, source, args.out_dir, replicate=args.replicate, device=args.device, artefacts=_artefacts(args.artefact)
        )
    finally:
        source.close()
    print(f"final model: {path}")


def _artefact_arguments(p: argparse.ArgumentParser) -> None:
    _run_arguments(p)
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)


@command("artefact", "build a pipeline artefact a method declares (its schema's x-artefacts)", _artefact_arguments)
def cmd_artefact(args) -> None:
    from .methods import artefact_builder

    cfg = _run_config(args)
    build = artefact_builder(cfg["method"], args.name)
    build(cfg, args.data, args.images_root, args.out, device=args.device, feed=feed_from_args(args))
    print(f"{args.name}: {args.out}")


def _tune_arguments(p: argparse.ArgumentParser) -> None:
    _run_arguments(p)
    p.add_argument("--models", nargs="+", required=True, help="the validation models, in train-grid order")
    p.add_argument("--out", required=True)


@command("tune", "choose a run's hyper-parameters on the validation classes", _tune_arguments)
def cmd_tune(args) -> None:
    from .evaluation.tuning import select

    cfg = _run_config(args)
    result = select(
        cfg,
        args.models,
        args.data,
        args.out,
        images_root=args.images_root,
        device=args.device,
        feed=feed_from_args(args),
    )
    v = result["validation"]
    print(
        f"chosen on the validation classes ({result['metric']}): {result['selected']} -> "
        f"T1 {v['T1']:.1f} U {v['U']:.1f} S {v['S']:.1f} H {v['H']:.1f}"
    )


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument(
        "--history",
        default=None,
        help="the run's periodic test evaluations (none for imported weights: one evaluation)",
    )
    p.add_argument("--data", "--features", dest="data", required=True, help=DATA_HELP)
    p.add_argument("--images-root", default=None)
    p.add_argument("--metrics", required=True)
    p.add_argument("--curve", required=True)
    p.add_argument(
        "--predictions", required=True, help="npz of the test predictions behind each number (intervals, verdicts)"
    )
    p.add_argument("--device", default=None)
    add_feed_arguments(p)


@command("evaluate", "evaluate a trained run under the paper and clean protocols", _evaluate_arguments)
def cmd_evaluate(args) -> None:
    from .evaluation.evaluate import evaluate_run

    result = evaluate_run(
        args.model,
        args.history,
        args.data,
        args.metrics,
        args.curve,
        args.predictions,
        device=args.device,
        images_root=args.images_root,
        feed=feed_from_args(args),
    )
    p, c = result["protocols"]["paper"], result["protocols"]["clean"]
    print(
        f"{result['method']} on {result['dataset']} (run {result['run']}): paper T1 {p['T1']:.1f} H {p['H']:.1f} | "
        f"clean T1 {c['T1']:.1f} U {c['U']:.1f} S {c['S']:.1f} H {c['H']:.1f} AUSUC {c['AUSUC']:.1f} "
        f"(chance T1 {result['chance']['T1']:.1f})"
    )


def _import_official_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method", required=True, help="a method that declares released models (python -m zslrepro methods)"
    )
    p.add_argument("--checkpoint", required=True, help="the release file (the method schema's x-releases names them)")
    p.add_argument("--data", required=True, help="our feature store (.h5) or dataset index (.npz) of its dataset")
    p.add_argument(
        "--setting", required=True, help="which setting the file is for (the schema's x-releases lists them)"
    )
    p.add_argument("--out", required=True, help="model file to write; diagnostics go beside it")
    p.add_argument(
        "--method-config",
        default=None,
        help="our method config of the dataset (default: <config-dir>/methods/<method>/<DS>.yaml, DS the data's folder)",
    )
    p.add_argument("--config-dir", default="config")
    p.add_argument("--sources", default=None, help="config/downloads.yaml: check the file's checksum like a download")
    p.add_argument("--lock", default="config/downloads.lock.yaml", help="where first-use checksums are recorded")
    p.add_argument(
        "--imagenet-weights",
        default=None,
        help="torchvision's ResNet-101 IMAGENET1K_V1 file to compare the backbone with (default: torch's cache)",
    )


@command("import-official", "a released official model as our model file, with diagnostics", _import_official_arguments)
def cmd_import_official(args) -> None:
    from pathlib import Path

    from .config import load_method_config, run_config
    from .methods import release_importer

    releases = release_importer(args.method)
    config = args.method_config
    if config is None:  # results/features/<DS>/<store>.h5 or results/data/<DS>/index.npz
        config = Path(args.config_dir) / "methods" / args.method / f"{Path(args.data).parent.name}.yaml"
        if not config.exists():
            raise ZslError(f"no method config {config} for the dataset of {args.data}: give --method-config")
    method_cfg = load_method_config(config)
    # a method trained as separate CZSL and GZSL runs imports each setting's file under that run's config
    run = args.setting if args.setting in method_cfg.get("runs", {}) else "main"
    cfg = run_config(method_cfg, run, source=str(config))
    if args.sources:
        from .released import verify_release

        verify_release(Path(args.checkpoint), args.sources, args.lock)
    diagnostics = releases.import_release(
        args.checkpoint, args.data, cfg, args.setting, args.out, args.imagenet_weights
    )
    print(releases.summary(diagnostics))
    print(f"model file: {args.out}")


def _attention_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--data", "--features", dest="data", required=True, help=DATA_HELP)
    p.add_argument("--index", required=True, help="the dataset index .npz (image paths, labels, attributes)")
    p.add_argument("--truth", required=True, help="the localisation ground truth .npz ingest wrote")
    p.add_argument("--dataset-config", required=True)
    p.add_argument("--images-root", default=None)
    p.add_argument("--out-dir", required=True, help="gets scores.json and figure.png")
    p.add_argument("--device", default=None)
    add_feed_arguments(p)


@command("attention", "score and draw a trained run's attention maps on test images", _attention_arguments)
def cmd_attention(args) -> None:
    from .config import load_dataset_config
    from .evaluation.attention import attention_run

    result = attention_run(
        args.model,
        args.data,
        args.index,
        args.truth,
        load_dataset_config(args.dataset_config),
        args.out_dir,
        images_root=args.images_root,
        device=args.device,
        feed=feed_from_args(args),
    )
    summary = "; ".join(
        f"{kind} "
        + (
            f"mass on object {s['mass_on_object']:.1f}% (uniform {s['uniform_mass']:.1f}%)"
            if "mass_on_object" in s
            else f"pointing {s.get('pointing', float('nan')):.1f}%"
        )
        for kind, s in (result.get("scores") or {}).items()
    )
    print(
        f"attention of {result['method']} on {result['dataset']} (run {result['run']}), "
        f"{result['images']} test images: {summary or result.get('note', '')}"
    )


def _localisation_table_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--out-dir", required=True)


@command("localisation-table", "the localisation table of the attention scores", _localisation_table_arguments)
def cmd_localisation_table(args) -> None:
    from .tables import render_localisation

    paths = render_localisation(args.scores, args.out_dir)
    print("localisation table: " + ", ".join(str(p) for p in paths.values()))


def _tables_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--predictions", nargs="*", default=None, help="one predictions file per metrics file, same order")
    p.add_argument("--paper-results", required=True)
    p.add_argument("--out-dir", required=True)
    statistics_args(p)


@command("tables", "render the results tables (CSV, Markdown, LaTeX) and the pairwise table", _tables_arguments)
def cmd_tables(args) -> None:
    from .tables import render

    paths = render(args.metrics, args.paper_results, args.out_dir, args.predictions, statistics_settings(args))
    print("tables: " + ", ".join(str(p) for p in paths.values()))


def statistics_args(p) -> None:
    """config.yaml's ``statistics``, as the workflow passes it (defaults: zslrepro.statistics)."""
    from .statistics.intervals import Settings

    d = Settings()
    p.add_argument("--resamples", type=int, default=d.resamples, help="bootstrap resamples")
    p.add_argument("--bootstrap-seed", type=int, default=d.seed, help="the resamples' seed")
    p.add_argument("--level", type=float, default=d.level, help="the intervals' confidence level")
    p.add_argument("--power", type=float, default=d.power, help="power of the smallest detectable difference")


def statistics_settings(args):
    from .statistics.intervals import Settings

    return Settings(resamples=args.resamples, seed=args.bootstrap_seed, level=args.level, power=args.power)


def _tuning_table_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--selected", nargs="*", default=[], help="tune's selected.json files")
    p.add_argument("--out-dir", required=True)


@command("tuning-table", "tabulate the hyper-parameters chosen on the validation classes", _tuning_table_arguments)
def cmd_tuning_table(args) -> None:
    from .tables import render_tuning

    paths = render_tuning(args.selected, args.out_dir)
    print("tuning table: " + ", ".join(str(p) for p in paths.values()))


def _plots_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curves", nargs="+", required=True)
    p.add_argument("--histories", nargs="+", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--seen-unseen", required=True, help="output PNG")
    p.add_argument("--training", required=True, help="output PNG")


@command("plots", "seen-unseen and training curves of one run (all replicates)", _plots_arguments)
def cmd_plots(args) -> None:
    from .plots import seen_unseen_figure, training_figure

    seen_unseen_figure(args.curves, args.title, args.seen_unseen)
    training_figure(args.histories, args.title, args.training)


def _doctor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=".", help="the checkout (where config/ and results/ are)")
    p.add_argument("--config", default="config/config.yaml", help="relative to --root")
    p.add_argument("--lock", default="requirements/lock.txt", help="relative to --root")


@command("doctor", "will a run work here? versions, torch build and GPUs, disk, data, tools", _doctor_arguments)
def cmd_doctor(args) -> int:
    from pathlib import Path

    from .doctor import FAIL, render, run, stores_of_configs

    root = Path(args.root)
    config = root / args.config
    checks = run(config, root / args.lock, root, stores_of_configs(config, root))
    print(render(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


def _verdict_figure_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-csv", required=True, help="results.csv of the tables command")
    p.add_argument("--method", required=True)
    p.add_argument("--out", required=True, help="PNG")


@command("verdict-figure", "one method's verdicts: replicates, intervals, paper values", _verdict_figure_arguments)
def cmd_verdict_figure(args) -> None:
    from .plots import verdict_figure

    verdict_figure(args.results_csv, args.method, args.out)


def _benchmarks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+")
    p.add_argument("--compute", nargs="*", default=[], help="the trainer's compute.json records (all sessions)")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-html", required=True)


@command("benchmarks", "summarise Snakemake benchmark files (wall time, peak memory)", _benchmarks_arguments)
def cmd_benchmarks(args) -> None:
    from .benchmark_summary import render

    render(args.files, args.out_csv, args.out_html, compute_files=args.compute)


def _reference_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results")
    p.add_argument("--out", required=True, help="e.g. results/reference/main")
    p.add_argument("--note", default="")


@command("reference", "snapshot a finished run's metrics and tuning choices as a reference", _reference_arguments)
def cmd_reference(args) -> None:
    from .reference_results import snapshot

    manifest = snapshot(args.results, args.out, note=args.note)
    print(f"reference snapshot {args.out}: {len(manifest['files'])} files, code {', '.join(manifest['code'])}")


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results")
    p.add_argument("--reference", default=None, help="a snapshot made by `zslrepro reference`")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="points, for every cell; default: exact on the reference's machine type, else each number by "
        "the reference's own interval (the rest by the documented cross-platform tolerance)",
    )
    p.add_argument("--paper", default=None, help="config/paper_results.yaml: print ours beside the papers' numbers")
    p.add_argument("--out-md", default=None, help="also write the check as Markdown (then exit 0: the file says)")
    p.add_argument("--out-csv", default=None, help="and every cell as CSV (with --out-md)")
    statistics_args(p)


@command(
    "compare", "check a run against a reference snapshot, cell by cell (or print ours vs paper)", _compare_arguments
)
def cmd_compare(args) -> int:
    from pathlib import Path

    if args.paper:
        from .reference_results import predictions_of
        from .tables import collect, load_paper_results, summarize, uncertainty

        results = Path(args.results)
        metrics = sorted(results.glob("metrics/*/*/*/rep*.json"))
        predictions = [results / predictions_of(m.relative_to(results)) for m in metrics]
        runs = collect(metrics, predictions if all(p.exists() for p in predictions) else None)
        table = summarize(runs, load_paper_results(args.paper), uncertainty(runs, statistics_settings(args))[0])
        table = table[table.metric != "AUSUC"][
            [
                "method",
                "variant",
                "dataset",
                "protocol",
                "metric",
                "n",
                "mean",
                "low",
                "high",
                "paper",
                "delta",
                "verdict",
            ]
        ]
        print(table.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
        return 0
    from .reference_results import compare, report

    if not args.reference:
        raise ZslError("compare needs --reference SNAPSHOT (or --paper config/paper_results.yaml)")
    table, summary = compare(args.reference, args.results, args.tolerance, statistics_settings(args))
    text = report(table, summary)
    print(text)
    if args.out_md:  # the workflow's check: the file says how it went, the job itself succeeds
        from .reference_results import write_check

        write_check(table, text, args.reference, args.out_md, args.out_csv)
        return 0
    return 1 if summary["moved"] or summary["missing"] else 0


def _docs_tables_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", default="results/reference/main")
    p.add_argument("--paper-results", default="config/paper_results.yaml")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is out of date")
    p.add_argument(
        "files", nargs="*", default=["README.md", "docs/synthetic.md", "docs/attention.md", "docs/verdicts.md"]
    )


@command(
    "docs-tables", "regenerate the results tables in README/docs from a reference snapshot", _docs_tables_arguments
)
def cmd_docs_tables(args) -> int:
    from .reference_results import detectable_block, localisation_block, results_block, update_blocks

    blocks = {
        "synth-results": results_block(args.reference, args.paper_results),
        "synth-localisation": localisation_block(args.reference),
        "synth-detectable": detectable_block(args.reference),
    }
    stale = update_blocks(args.files, blocks, check=args.check)
    if args.check and stale:
        print("out of date (regenerate with `python -m zslrepro docs-tables`): " + ", ".join(map(str, stale)))
        return 1
    print(("up to date: " if args.check or not stale else "regenerated: ") + ", ".join(map(str, stale or args.files)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zslrepro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, arguments, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        arguments(p)
        p.set_defaults(func=handler)
    return parser


# The commands whose floats a numbers mode decides (zslrepro.numerics): they run its exact ops.
COMPUTING = {"extract", "train", "artefact", "tune", "evaluate", "attention", "import-official"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # kernel choices first: they must be in the environment before any command imports torch
        from .numerics import apply as apply_numerics

        mode = apply_numerics()
        if getattr(args, "threads", None) is not None:
            from .runtime import apply_threads

            apply_threads(args.threads, args.compute_threads)
        if args.command in COMPUTING:
            from .numerics import exact_sqrt

            with exact_sqrt(mode):  # portable mode: correctly rounded sqrt, the same bits on every CPU
                status = args.func(args)
        else:
            status = args.func(args)
    except ZslError as exc:
        print(f"zslrepro: error: {exc}", file=sys.stderr)
        return 2
    return status or 0
