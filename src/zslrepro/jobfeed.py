"""The settings a job gets that change no number: how it feeds its steps.

One list (:data:`FEED_OPTIONS`): the workflow passes them to the computing commands as options
outside the rules' code inputs (workflow/rules/common.smk ``FEED``: changing one re-runs nothing),
and each command hands them down as arguments to the function that uses them. Provenance records
what ran. Torch-free: the workflow and the CLI's parser read it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .errors import ConfigError, ZslError

CACHE_MODES = ("auto", "ram", "stream")


@dataclass(frozen=True)
class JobFeed:
    """How a job feeds its steps. No number depends on any of it (provenance records what ran)."""

    cache: str = "auto"  # config features.cache: hold a run's feature rows in RAM (ram), stream them, or decide
    ram_fraction: float = 0.5  # config features.ram_fraction: the share of available memory auto may hold
    threads: int | None = None  # CPUs the job may use (the rule's threads): loader workers on CPU
    cores: int | None = None  # the workflow's --cores: caps the loader workers of a GPU job

    def __post_init__(self):
        if self.cache not in CACHE_MODES:
            raise ConfigError(f"features.cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if not 0 < self.ram_fraction <= 1:
            raise ConfigError(f"features.ram_fraction must be in (0, 1], got {self.ram_fraction}")
        for name in ("threads", "cores"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ZslError(f"--{name} must be at least 1, got {value}")


# The settings outside the rules' code inputs, as command options: JobFeed field -> option.
FEED_OPTIONS = {
    "cache": "--feature-cache",
    "ram_fraction": "--ram-fraction",
    "threads": "--threads",
    "cores": "--cores",
}


def feed_flags(features: dict, cores: int | None) -> str:
    """The options a workflow job gets from config ``features`` and the run's ``--cores`` (its
    threads are the rule's, given by the rule itself)."""
    default = JobFeed()
    feed = JobFeed(
        features.get("cache", default.cache), float(features.get("ram_fraction", default.ram_fraction)), None, cores
    )
    return " ".join(
        f"{FEED_OPTIONS[k]} {getattr(feed, k)}"
        for k in ("cache", "ram_fraction", "cores")
        if getattr(feed, k) is not None
    )


def add_feed_arguments(parser: argparse.ArgumentParser) -> None:
    """The :data:`FEED_OPTIONS` and ``--compute-threads`` on a computing command."""
    default = JobFeed()
    parser.add_argument(FEED_OPTIONS["cache"], dest="feature_cache", choices=CACHE_MODES, default=default.cache)
    parser.add_argument(FEED_OPTIONS["ram_fraction"], dest="ram_fraction", type=float, default=default.ram_fraction)
    parser.add_argument(
        FEED_OPTIONS["threads"],
        dest="threads",
        type=int,
        default=None,
        help="CPU threads this job may use (torch threads; DataLoader workers <= threads - 1)",
    )
    parser.add_argument(FEED_OPTIONS["cores"], dest="cores", type=int, default=None, help="the workflow's --cores")
    parser.add_argument(
        "--compute-threads",
        type=int,
        default=None,
        help="torch's threads at most (the workflow fixes them: their count can move CPU numerics)",
    )


def feed_from_args(args: argparse.Namespace) -> JobFeed:
    return JobFeed(args.feature_cache, args.ram_fraction, args.threads, args.cores)
