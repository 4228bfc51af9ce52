"""The BentoML peer: a ``@bentoml.service`` whose batchable API runs onnxruntime + tokenizers
(``onnx_model``): ``POST /classify`` with ``{"texts": [...]}``, answering a list of
``{"label", "score"}``. Runs in BentoML's own environment, with the repository on PYTHONPATH.

    PEER_VARIANT=<variant folder> PEER_THREADS=1 PEER_WORKERS=2 \
        bentoml serve loadtests.peers.bentoml_service:Classifier --host 127.0.0.1 --port 3000

``max_latency_ms`` stays at its default (60 s): in BentoML it is a deadline past which a request
gets 503, not how long the batcher waits for more requests (it adapts that wait by itself).
"""

from __future__ import annotations

import os

import bentoml

from loadtests.peers.onnx_model import TextClassifier


@bentoml.service(
    workers=int(os.environ.get("PEER_WORKERS", "1")),
    logging={"access": {"enabled": False}},  # no log line per request, as brum at warning
)
class Classifier:
    def __init__(self) -> None:
        self.classifier = TextClassifier(
            os.environ["PEER_VARIANT"], int(os.environ.get("PEER_THREADS", "0"))
        )

    @bentoml.api(batchable=True, max_batch_size=32)
    def classify(self, texts: list[str]) -> list[dict]:
        return self.classifier.classify(texts)
