"""The serving path must not import torch or transformers: start-up time and image size matter."""

import subprocess
import sys
from pathlib import Path

from tests.server import ROOT

CHECK = """
import sys
from app.__main__ import main
from app.transport.api import create_app
app = create_app()
loaded = sorted(m for m in ("torch", "transformers", "optimum", "datasets") if m in sys.modules)
print(",".join(loaded))
"""


def test_serving_path_imports_neither_torch_nor_transformers():
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_running_server_maps_no_torch_library(server):
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "libtorch" not in maps and "/torch/" not in maps
    assert "onnxruntime" in maps
