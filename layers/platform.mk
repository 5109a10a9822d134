# The Lambda platform every function and layer is built for. template.yaml must agree
# (Globals Runtime, the Architecture parameter's default); tests/unit/test_build_config.py checks it.
LAMBDA_RUNTIME := python3.13
LAMBDA_PYTHON := 3.13
LAMBDA_ARCH := arm64
