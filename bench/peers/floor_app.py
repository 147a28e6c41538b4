"""The floor of a Python server: a bare ASGI app on uvicorn (httptools, uvloop) scoring one-row CSV bodies
with the same scorer as ours (``model_code.serve.scorer.Scorer``, the model's ``predict_proba`` on its
checked fast path), and nothing else: no validation, negotiation, metrics, logs or process manager.

    BENCH_MODEL=path/to/model uvicorn bench.peers.floor_app:app --workers N --http httptools --loop uvloop
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from model_code.model import load_model
from model_code.schema import NumericFeature
from model_code.serve.protocol import Features
from model_code.serve.scorer import Scorer

MODEL = load_model(os.environ["BENCH_MODEL"])
SCORER = Scorer(MODEL)
FEATURES = MODEL.schema.features


def score(body: bytes) -> float:
    """One CSV row in schema order (a header line, if any, is skipped)."""
    values = body.decode().strip().split("\n")[-1].split(",")
    numeric, categorical = {}, {}
    for f, v in zip(FEATURES, values, strict=True):
        if isinstance(f, NumericFeature):
            numeric[f.name] = np.array([float(v) if v else math.nan])
        else:
            categorical[f.name] = [v or None]
    return float(SCORER.score(Features(numeric, categorical, 1))[0])  # type: ignore[arg-type]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b"{}"
    if scope["path"] != "/ping":
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = f"{score(b''.join(chunks))!r}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/csv"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
