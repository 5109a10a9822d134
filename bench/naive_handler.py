"""The baseline: a prediction handler of the kind published samples show.

Module-level ``joblib.load``, ``json.loads``, a pandas DataFrame, ``predict_proba``; no
validation, no metrics, no logging. Used only by the benchmarks, as the figure to beat.
"""

import json
import os

import joblib
import pandas as pd

model = joblib.load(os.path.join(os.environ["SKLAMBDA_MODEL_DIR"], "model.joblib"))


def lambda_handler(event, context):
    body = json.loads(event["body"])
    frame = pd.DataFrame(body["instances"])
    proba = model.predict_proba(frame)
    classes = [str(c) for c in model.classes_]
    predictions = [
        {
            "label": classes[row.argmax()],
            "probabilities": dict(zip(classes, row.tolist(), strict=True)),
        }
        for row in proba
    ]
    return {"statusCode": 200, "body": json.dumps({"predictions": predictions})}
