"""sklambda: a fitted scikit-learn pipeline taken to production on AWS Lambda.

The package is the shared core that every Lambda function uses (it ships in a layer to
``/opt/python``). Importing it is cheap: heavy libraries (scikit-learn, pandas, onnxruntime) are
imported only by the code paths that need them.
"""

__version__ = "0.1.0"
