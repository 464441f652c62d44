"""Which accelerators this machine shows, without importing torch (the workflow asks while parsing)."""

from __future__ import annotations

from pathlib import Path

DEVICE_DIR = Path("/dev")


def nvidia_gpu_visible(device_dir: Path = DEVICE_DIR) -> bool:
    """Whether an NVIDIA GPU's device file (``/dev/nvidia0``, ...) is present."""
    return any(device_dir.glob("nvidia[0-9]*"))
