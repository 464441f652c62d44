"""The required top-level layout is in git (a clean clone must have it)."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_required_top_level_entries_are_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (e.g. an sdist): check the files instead
        tracked = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    for entry in ("workflow/", "src/", "config/", "dvc.yaml", "results/", "tests/", "environment.yml", "README.md"):
        assert any(t == entry or t.startswith(entry) for t in tracked), entry
