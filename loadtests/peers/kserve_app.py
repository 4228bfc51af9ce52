"""The KServe peer: ``kserve.ModelServer`` (0.21) with a custom ``kserve.Model`` running
onnxruntime + tokenizers (``onnx_model``), V1 protocol: ``POST /v1/models/<name>:predict``.

    PEER_VARIANT=<variant folder> PEER_THREADS=1 python -m loadtests.peers.kserve_app \
        --http_port 8080 --workers 2 --enable_grpc false --enable_latency_logging false

kserve's own flags are read from the command line (it parses them at import). Its REST server
hard-codes host 0.0.0.0 in its uvicorn config; here it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import kserve
import kserve.logging
from kserve import model_server
from kserve.protocol.rest import server as rest_server
from kserve.protocol.rest.multiprocess import server as multiprocess_server

from loadtests.peers.onnx_model import TextClassifier

HOST = "127.0.0.1"

# No log line per request (uvicorn's access log, KServe's timing traces), as brum runs here at
# log level warning. Configured at import so that spawned workers, which import this module
# again, keep it: KServe configures its default logging only where none is configured yet.
QUIET = copy.deepcopy(kserve.logging.KSERVE_LOG_CONFIG)
for name in ("uvicorn.access", "kserve.trace"):
    QUIET["loggers"][name]["level"] = "WARNING"
kserve.logging.configure_logging(QUIET)


class LoopbackRESTServer(rest_server.RESTServer):
    """KServe's REST server, bound to loopback rather than every interface."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = HOST


# ModelServer (one process) and RESTServerMultiProcess (--workers > 1) both build a RESTServer.
model_server.RESTServer = LoopbackRESTServer
multiprocess_server.RESTServer = LoopbackRESTServer


class OnnxModel(kserve.Model):
    def __init__(self, name: str, folder: Path, threads: int) -> None:
        super().__init__(name)
        self.folder, self.threads = folder, threads
        self.classifier: TextClassifier | None = None
        self.load()

    def load(self) -> bool:
        self.classifier = TextClassifier(self.folder, self.threads)
        self.ready = True
        return self.ready

    # --workers > 1 spawns worker processes and pickles the model to them: an onnxruntime session
    # does not pickle, so each worker loads its own.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "classifier": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        return {"predictions": self.classifier.classify(payload["instances"])}


def main() -> None:
    folder = Path(os.environ["PEER_VARIANT"])
    model = OnnxModel(folder.name, folder, int(os.environ.get("PEER_THREADS", "0")))
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
