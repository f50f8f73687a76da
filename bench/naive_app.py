"""What a user would write by hand: a pydantic `list[list[float]]` body, then NumPy.

Also serves /hello, the throughput ceiling of an endpoint that does nothing, under the
same uvicorn settings as the real service.
"""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Body(BaseModel):
    logits: list[list[float]]
    labels: list[int]
    return_gradient: bool = False


@app.post("/v1/losses/categorical")
def categorical(body: Body) -> dict[str, object]:
    z = np.asarray(body.logits, dtype=np.float64)
    y = np.asarray(body.labels)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(y)
    out: dict[str, object] = {"loss": float(-log_p[np.arange(n), y].mean())}
    if body.return_gradient:
        grad = np.exp(log_p)
        grad[np.arange(n), y] -= 1.0
        out["gradient"] = (grad / n).tolist()
    return out


@app.get("/hello")
def hello() -> dict[str, str]:
    return {"hello": "world"}


@app.post("/hello")
def hello_post() -> dict[str, str]:
    return {"hello": "world"}
