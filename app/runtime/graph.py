"""The graph a session runs: the model file, with the fused kernels that are slow on CPU undone.

onnxruntime's transformer optimizer (and optimum's -O2 and up, and brum's own build) fuses each
residual Add and the LayerNorm after it into one ``SkipLayerNormalization``. On CPU, with
onnxruntime 1.32, that kernel costs five times what ``Add`` + ``LayerNormalization`` cost for
the same work (196 against 40 us on [16, 6, 384], one thread) and a quarter of a MiniLM int8
run. Unfused, the shipped L6 int8 variant runs 1.14-1.25x the texts per second, and 4 of
CLINC150's 5,500 test answers change, as int8 rounding moves (BENCHMARKS.md). The session is also
told not to fuse them back (``UNFUSED_OPTIMIZERS``), which speeds up QDQ graphs too, where
onnxruntime would otherwise fuse them itself.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger("brum")

SKIP_LAYER_NORM = "SkipLayerNormalization"
# onnxruntime's graph transformers that would fuse them again when the session loads the graph.
UNFUSED_OPTIMIZERS = ("SkipLayerNormFusion",)


@contextmanager
def session_model(model_path: Path) -> Iterator[str | bytes]:
    """What the session should load: the model's own path, or its rewritten graph in a temporary
    file, deleted once the session is made. A graph given as bytes costs the session 20-30 MB
    more than a file it reads itself, so bytes only where no temporary file can be written."""
    graph = rewritten_graph(model_path)
    if graph is None:
        yield str(model_path)
        return
    try:
        handle = tempfile.NamedTemporaryFile(prefix="brum-", suffix=".onnx")  # noqa: SIM115
    except OSError as exc:
        logger.warning("no temporary file for the rewritten graph (%s): loaded from memory", exc)
        yield graph
        return
    with handle:
        handle.write(graph)
        handle.flush()
        yield handle.name


def rewritten_graph(model_path: Path) -> bytes | None:
    """The model's graph with its slow fused nodes undone, or None where there are none."""
    stat = model_path.stat()
    return _rewritten(model_path, stat.st_mtime_ns, stat.st_size)


# A variant's sessions (calibration's candidates, then the serving ones) are made one after
# another: the last graph rewritten is kept rather than read, parsed and written again for each
# (25 ms apiece for L6). The file's time and size are in the key, so a replaced model is read.
@functools.lru_cache(maxsize=1)
def _rewritten(model_path: Path, mtime_ns: int, size: int) -> bytes | None:
    data = model_path.read_bytes()
    if SKIP_LAYER_NORM.encode() not in data:  # most graphs: no need to parse them
        return None
    import onnx  # the parser costs 0.3 s to import: only for graphs that need it

    model = onnx.load_model_from_string(data)
    if _has_external_data(model):  # its tensors live beside the file: keep it as it is
        return None
    replaced = unfuse_skip_layer_norm(model.graph)
    if not replaced:
        return None
    logger.debug("%s: %d SkipLayerNormalization nodes unfused", model_path, replaced)
    return model.SerializeToString()


def unfuse_skip_layer_norm(graph: onnx.GraphProto) -> int:
    """Replace each ``SkipLayerNormalization`` (input + skip [+ bias], then LayerNorm with gamma
    [and beta]) by ``Add`` nodes and a ``LayerNormalization``; returns how many. A node whose
    mean or inverse-deviation outputs are read stays fused."""
    from onnx import helper

    nodes = []
    replaced = 0
    for node in graph.node:
        outputs = [*node.output, "", "", ""][:4]  # output, mean, inv_std_var, the sum
        if node.op_type != SKIP_LAYER_NORM or node.domain != "com.microsoft" or any(outputs[1:3]):
            nodes.append(node)
            continue
        source, skip, gamma, beta, bias = [*node.input, "", "", ""][:5]
        epsilon = next(
            (helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-12
        )
        prefix = outputs[0]  # unique in the graph, where node names may be empty
        total = outputs[3] or f"{prefix}/sum"
        summed = f"{prefix}/input_skip" if bias else total
        nodes.append(helper.make_node("Add", [source, skip], [summed], name=f"{prefix}/add"))
        if bias:
            nodes.append(helper.make_node("Add", [summed, bias], [total], name=f"{prefix}/bias"))
        scale = [gamma, beta] if beta else [gamma]
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [total, *scale],
                [outputs[0]],
                name=f"{prefix}/layer_norm",
                axis=-1,
                epsilon=epsilon,
            )
        )
        replaced += 1
    if replaced:
        del graph.node[:]
        graph.node.extend(nodes)
    return replaced


def _has_external_data(model: onnx.ModelProto) -> bool:
    from onnx import TensorProto

    return any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
