"""The naive peer: FastAPI + onnxruntime as a user writes it in 30 lines. Session defaults, a sync
route (FastAPI runs it in its thread pool), one text per session.run, uvicorn's access log on.

    NAIVE_VARIANT=models/repository/minilm-l6-augmented-int8 uvicorn loadtests.peers.naive_app:app
"""

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer

folder = Path(os.environ["NAIVE_VARIANT"])
card = json.loads((folder / "variant.json").read_text())
session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
tokenizer.no_padding()  # the exported file pads every text to 128 tokens
tokenizer.enable_truncation(max_length=card["max_length"])
inputs = {i.name for i in session.get_inputs()}
app = FastAPI()


class Request(BaseModel):
    text: str | None = None
    texts: list[str] | None = None


def classify(text: str) -> dict:
    encoding = tokenizer.encode(text)
    feeds = {
        "input_ids": np.array([encoding.ids], dtype=np.int64),
        "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
        "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
    }
    logits = session.run(None, {k: v for k, v in feeds.items() if k in inputs})[0][0]
    scores = np.exp(logits - logits.max())
    scores /= scores.sum()
    return {"label": card["labels"][int(scores.argmax())], "score": float(scores.max())}


@app.post("/predict")
def predict(request: Request) -> dict:
    texts = request.texts if request.texts is not None else [request.text]
    return {"predictions": [classify(text) for text in texts]}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
