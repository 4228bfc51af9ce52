"""The baseline: what a user would write first — FastAPI around a transformers ``pipeline``
serving the fp32 PyTorch teacher. Only for the serving benchmark; brum never imports it.

    NAIVE_MODEL=runs/clinc150/teacher/finetune uvicorn loadtests.naive_server:app
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

classifier = pipeline("text-classification", model=os.environ["NAIVE_MODEL"], device=-1)
app = FastAPI()


class Request(BaseModel):
    text: str


@app.post("/predict")
def predict(request: Request) -> dict:
    return classifier(request.text)[0]


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
