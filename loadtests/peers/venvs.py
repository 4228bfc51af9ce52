"""The peers that cannot share brum's environment get their own, pinned, under ``.cache/peers/``
(git-ignored), built on first use and reused while their requirements stay the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loadtests.processes import ROOT

CACHE = ROOT / ".cache" / "peers"
STAMP = "requirements.txt"


class VenvError(RuntimeError):
    """The environment could not be built; the message says why."""


def ensure_venv(name: str, requirements: tuple[str, ...], timeout: float = 1200) -> Path:
    """The python of ``.cache/peers/<name>`` with exactly ``requirements`` installed."""
    folder = CACHE / name
    python = folder / "bin" / "python"
    wanted = "\n".join(requirements) + "\n"
    stamp = folder / STAMP
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    log = CACHE / f"{name}.log"
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"  building {folder} ({', '.join(requirements)}); log: {log}", flush=True)
    stamp.unlink(missing_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(folder)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *wanted.split(),
        ],
    ]
    with log.open("w") as output:
        for step in steps:
            try:
                subprocess.run(
                    step, stdout=output, stderr=subprocess.STDOUT, timeout=timeout, check=True
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                errors = [line for line in log.read_text().splitlines() if "WARNING" not in line]
                raise VenvError(f"{' '.join(step[:4])}: {exc}; {' | '.join(errors[-3:])}") from exc
    stamp.write_text(wanted)
    return python
