"""Atlas's financial models as an MLServer custom runtime, spoken to over the Open Inference
Protocol (KServe V2).

The contract (README, "Model endpoints on the Open Inference Protocol"): one Atlas batch is
one inference request whose `BYTES` input tensor `input` (shape `[n]`) holds the batch's
inputs as canonical JSON, with the operation in the request's `parameters.operation`. The
answer is a `BYTES` output tensor `output` of shape `[n, 1]`, one JSON element per input, in
order: `{"result": {...}, "confidence": c, "volatility": v, "dependencies": [...],
"symbols": [...]}`, or `{"error": "..."}` / `{"error": {"code": ..., "message": ...}}` for an
input that fails alone (`numerical_failure` for a non-finite figure).

`risk_assessment` is implemented here and gives the numbers of Atlas's embedded model
(`src/models/risk.rs`) to within 1e-9; any other operation fails item by item.

Model settings (`parameters.extra` in `model-settings.json`):

- `mode`: `ok` (default) or a deliberate protocol fault for Atlas's tests: `wrong_count`
  (one element too few), `wrong_datatype` (the output tensor as `FP64`), `fail` (HTTP 500
  with a V2 error body, `{"error": "..."}`), `slow_load` (loading takes `load_seconds`,
  default 30, during which the server as a whole is not ready).
- `batch_log`: a file to which every request appends its batch size, one line each (how
  Atlas's tests see its batching from the server's side).
"""

import asyncio
import json
import math

from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


def _answer(x):
    return (float(x) - 1.0) / 4.0


def _clamp(x, lo, hi):
    return min(max(x, lo), hi)


def _profile(score):
    if score < 20.0:
        return "conservative", 0.0, 0.06
    if score < 40.0:
        return "moderate", 0.06, 0.10
    if score < 60.0:
        return "balanced", 0.10, 0.14
    if score < 80.0:
        return "growth", 0.14, 0.18
    return "aggressive", 0.18, 0.30


def _sample_std(xs):
    n = len(xs)
    if n < 2:
        return 0.0
    m = sum(xs) / n
    var = sum((x - m) * (x - m) for x in xs) / (n - 1)
    return math.sqrt(max(var, 0.0))


def _annual_volatility(holdings, periods_per_year):
    total = sum(float(h["weight"]) for h in holdings)
    weights = [float(h["weight"]) / total for h in holdings]
    asset = [
        [p[t + 1] / p[t] - 1.0 for t in range(len(p) - 1)]
        for p in (list(map(float, h["prices"])) for h in holdings)
    ]
    periods = len(asset[0]) if asset else 0
    portfolio = [sum(w * r[t] for r, w in zip(asset, weights)) for t in range(periods)]
    vol = _sample_std(portfolio) * math.sqrt(float(periods_per_year))
    if not math.isfinite(vol):
        raise ValueError("volatility is not finite")
    return vol


def risk_assessment(i):
    """The embedded model's `risk_assessment` on an input Atlas has already validated."""
    age = _clamp((80.0 - float(i["age"])) / 60.0, 0.0, 1.0)
    horizon = _clamp(float(i["horizon_years"]), 0.0, 30.0) / 30.0
    score = 100.0 * (
        0.30 * _answer(i["loss_tolerance"])
        + 0.25 * horizon
        + 0.15 * age
        + 0.15 * _answer(i["income_stability"])
        + 0.15 * _answer(i["experience"])
    )
    score = _clamp(score, 0.0, 100.0)
    name, lower, upper = _profile(score)
    s = score / 100.0
    stocks = 0.10 + 0.80 * s
    cash = 0.10 - 0.08 * s
    bonds = 1.0 - stocks - cash
    band = {"lower": lower, "upper": upper}
    result = {
        "risk_score": score,
        "profile": name,
        "recommended_allocation": {"stocks": stocks, "bonds": bonds, "cash": cash},
        "volatility_band": band,
    }
    holdings = i.get("holdings")
    confidence, volatility, symbols = 0.8, 0.0, []
    if holdings:
        vol = _annual_volatility(holdings, i.get("periods_per_year", 252))
        if vol > upper:
            distance, status = vol - upper, "above"
        elif vol < lower:
            distance, status = vol - lower, "below"
        else:
            distance, status = 0.0, "within"
        result["portfolio"] = {
            "volatility": vol,
            "band": band,
            "distance": distance,
            "status": status,
        }
        n = max(len(holdings[0]["prices"]) - 1, 0)
        confidence = 0.8 + 0.2 * (n / (n + 20.0))
        volatility = max(vol, 0.0)
        symbols = [h["symbol"] for h in holdings]
    return {
        "result": result,
        "confidence": _clamp(confidence, 0.0, 1.0),
        "volatility": volatility,
        "dependencies": ["symbol:" + s for s in symbols],
        "symbols": symbols,
    }


OPERATIONS = {"risk_assessment": risk_assessment}


def _text(element):
    if isinstance(element, (bytes, bytearray)):
        return element.decode("utf-8")
    return str(element)


def _elements(data):
    """The input tensor's elements, flat (JSON allows nested row-major arrays)."""
    out = []
    for d in data:
        if isinstance(d, list):
            out.extend(_elements(d))
        else:
            out.append(d)
    return out


class AtlasModel(MLModel):
    async def load(self) -> bool:
        extra = {}
        if self.settings.parameters is not None and self.settings.parameters.extra:
            extra = self.settings.parameters.extra
        self._mode = extra.get("mode", "ok")
        self._batch_log = extra.get("batch_log")
        if self._mode == "slow_load":
            await asyncio.sleep(float(extra.get("load_seconds", 30)))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        tensor = next((t for t in payload.inputs if t.name == "input"), None)
        if tensor is None or tensor.datatype != "BYTES":
            raise MLServerError("expected a BYTES input tensor named `input`", status_code=400)
        params = payload.parameters.model_dump() if payload.parameters is not None else {}
        op = params.get("operation")
        items = _elements(list(tensor.data.root if hasattr(tensor.data, "root") else tensor.data))
        if self._batch_log:
            with open(self._batch_log, "a") as log:
                log.write(f"{len(items)}\n")
        if self._mode == "fail":
            raise MLServerError("the model failed on purpose (mode=fail)", status_code=500)
        outputs = []
        for item in items:
            model = OPERATIONS.get(op)
            if model is None:
                outputs.append({"error": f"operation `{op}` is not served by this runtime"})
                continue
            try:
                out = model(json.loads(_text(item)))
                # A value that is not a finite number fails its item alone, as a numerical
                # failure (the embedded model's code), never the whole answer.
                json.dumps(out, allow_nan=False)
                outputs.append(out)
            except (ValueError, OverflowError, ZeroDivisionError) as e:
                outputs.append({"error": {"code": "numerical_failure", "message": str(e)}})
            except (KeyError, TypeError) as e:
                outputs.append({"error": {"code": "invalid_input", "message": f"{type(e).__name__}: {e}"}})
        data = [json.dumps(o, allow_nan=False) for o in outputs]
        datatype = "BYTES"
        if self._mode == "wrong_count":
            data = data[:-1]
        if self._mode == "wrong_datatype":
            datatype, data = "FP64", [0.0 for _ in data]
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[
                ResponseOutput(name="output", datatype=datatype, shape=[len(data), 1], data=data)
            ],
        )
