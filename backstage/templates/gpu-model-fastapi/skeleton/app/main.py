"""${{ values.name }}: the MLflow model ${{ values.modelName }} behind FastAPI, on the GPU.

The model version comes from the environment (MODEL_NAME, MODEL_VERSION; the Deployment sets them next to the
mlflow.org/* pod labels gpucost bills by). Replace predict() with what your callers need.
"""

import os
from contextlib import asynccontextmanager

import mlflow.pyfunc
import pandas as pd
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_URI = f"models:/{os.environ['MODEL_NAME']}/{os.environ['MODEL_VERSION']}"

model = None


@asynccontextmanager
async def lifespan(_: FastAPI):
    global model
    model = mlflow.pyfunc.load_model(MODEL_URI)
    yield


app = FastAPI(title="${{ values.name }}", version=os.environ["MODEL_VERSION"], lifespan=lifespan)


class PredictRequest(BaseModel):
    # One row per instance, column name -> value (the model signature's inputs).
    instances: list[dict]


@app.get("/healthz")
def healthz() -> dict:
    return {"ok": True}


@app.get("/readyz")
def readyz() -> dict:
    if model is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    return {"model": MODEL_URI}


@app.post("/predict")
def predict(req: PredictRequest) -> dict:
    if model is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    out = model.predict(pd.DataFrame(req.instances))
    return {"predictions": out.tolist() if hasattr(out, "tolist") else out}
