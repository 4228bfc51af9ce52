"""The MLServer peer's custom runtime: an ``mlserver.MLModel`` running onnxruntime + tokenizers
(``onnx_model``) on V2 requests with one BYTES input of texts, answering a BYTES ``label`` and an
FP32 ``score`` output. Runs in MLServer's own environment, with the repository on PYTHONPATH.

Model settings: ``parameters.uri`` is the variant folder, ``parameters.extra.threads`` the
onnxruntime intra-op threads of each worker's session (0: one per core).
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from loadtests.peers.onnx_model import TextClassifier


class OnnxTextClassifier(MLModel):
    async def load(self) -> bool:
        parameters = self.settings.parameters
        threads = int((parameters.extra or {}).get("threads", 0))
        self.classifier = TextClassifier(parameters.uri, threads)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        results = self.classifier.classify(texts)
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                StringCodec.encode_output("label", [r["label"] for r in results]),
                ResponseOutput(
                    name="score",
                    shape=[len(results)],
                    datatype="FP32",
                    data=[r["score"] for r in results],
                ),
            ],
        )
