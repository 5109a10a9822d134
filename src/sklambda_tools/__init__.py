"""sklambda's tools: what runs on a laptop or in CI, never in a Lambda layer.

Packaging with its validation gate, ONNX export and parity, the model card, the example model,
the file drift command, and the local stand-ins for Lambda, API Gateway and S3. The tools import
the runtime package ``sklambda``; the runtime never imports them.
"""
