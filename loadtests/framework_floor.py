"""The floor under any Python HTTP route here: how much CPU uvicorn alone, and uvicorn + FastAPI
with the service's own request and response models, spend per request, with no model at all.

The server is pinned to core 0 and wrk to core 1, so requests per second on the saturated server
core give the CPU cost per request directly. Puts the service's per-request cost (BENCHMARKS.md)
in scale.

    python -m loadtests.framework_floor [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from app.transport.schemas import LabelScore, Prediction, PredictRequest, PredictResponse
from loadtests.wrk import run_wrk
from models.sources.clinc150 import load_clinc150

ROOT = Path(__file__).resolve().parents[1]
ANSWER = PredictResponse(
    request_id="0" * 32,
    variant="v",
    predictions=[
        Prediction(
            label="balance",
            score=0.9,
            top_k=[LabelScore(label="balance", score=0.9)] * 5,
            truncated=False,
            tokens=9,
            low_confidence=False,
        )
    ],
)
ANSWER_BYTES = ANSWER.model_dump_json().encode()

fastapi_app = FastAPI()


@fastapi_app.post("/predict")
async def predict(body: PredictRequest) -> PredictResponse:
    return ANSWER


async def asgi_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    PredictRequest.model_validate_json(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(ANSWER_BYTES)),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER_BYTES})


def measure(app: str, bodies: list[dict], seconds: float, port: int) -> dict:
    command = ["taskset", "-c", "0", sys.executable, "-m", "uvicorn", app, "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/predict"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(url, json=bodies[0])
                break
            except httpx.TransportError:
                time.sleep(0.1)
        os.sched_setaffinity(0, {1})  # wrk inherits it
        saturated = run_wrk(url, bodies, connections=16, seconds=seconds)
        one = run_wrk(url, bodies, connections=1, seconds=seconds)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        server.terminate()
        server.wait(timeout=15)
    rate = saturated["requests_per_second"]
    return {
        "requests_per_second_one_core": rate,
        "cpu_us_per_request": round(1e6 / rate, 1),
        "one_connection_p50_ms": one["p50_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the server, one for wrk")
    texts = load_clinc150().splits["test"].texts[:1000]
    bodies = [{"text": t} for t in texts]
    result = {
        "FastAPI route, pydantic body and response model": measure(
            "loadtests.framework_floor:fastapi_app", bodies, args.seconds, 8797
        ),
        "bare ASGI app, pydantic parse, pre-serialized answer": measure(
            "loadtests.framework_floor:asgi_app", bodies, args.seconds, 8798
        ),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
