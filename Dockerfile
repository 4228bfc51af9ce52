# brum serving image: torch-free (onnxruntime + tokenizers), the shipped model repository baked in.
#   docker build -t brum .    docker run -p 8000:8000 brum
# Stage 1 installs the serving dependencies into a venv; stage 2 copies only that venv and the code.

FROM python:3.11-slim AS builder
WORKDIR /build
COPY pyproject.toml deploy/constraints.txt ./
# Only the dependencies (core + the serve extra), pinned by the constraints file: installing the
# project itself would also package models/ (the torch pipeline) and a second copy of the repository.
# Nothing installs at run time, so pip and setuptools go, and so do the packages' own test suites.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['serve']))" > requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt -r requirements.txt \
 && /opt/venv/bin/pip uninstall --yes --disable-pip-version-check setuptools pip \
 && find /opt/venv -depth -type d -name tests -exec rm -rf {} +

FROM python:3.11-slim
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin brum
WORKDIR /srv/brum
COPY --from=builder /opt/venv /opt/venv
COPY pyproject.toml ./
COPY app ./app
COPY models/repository ./models/repository
# Compiled now: at run time the root filesystem may be read-only.
RUN /opt/venv/bin/python -m compileall -q app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BRUM_HOST=0.0.0.0 \
    BRUM_PORT=8000 \
    BRUM_MODEL_REPOSITORY=/srv/brum/models/repository \
    BRUM_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000
# The slim image has no curl: ask /healthz (liveness) with the standard library.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BRUM_PORT', '8000'), timeout=2)"]
# One process per container (threads sized to its CPU limit at start-up); scale out with replicas.
CMD ["python", "-m", "app"]
