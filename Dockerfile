# The SD3.5 twin as a container: docs/docker.md.
#
#   docker build -t sd35-twin .
#   docker run --rm -p 8080:8080 -e SD35_MOCK_CONTROL_TOKEN=secret sd35-twin
#
# BASE is any image with python3 (3.11+) and its venv module: python:3.12-slim by default, or the
# Debian-built base image this repository's CI uses where no registry is reachable (tests/test_docker.py).
ARG BASE=python:3.12-slim

# ---- build: a venv with the runtime dependencies and the package; pip itself stays behind ----------------
FROM ${BASE} AS build
# pip's settings for this build only (an index mirror, its CA bundle): nothing is hard-coded here, and these
# arguments never reach the final image. Pass them with --build-arg where the host's pip needs them.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src

# 1. The runtime dependencies and the build backend, read from pyproject.toml alone: a change to the code
#    reinstalls neither.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
 && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); print(*p['build-system']['requires'], *p['project']['dependencies'], sep='\n')" > /tmp/deps.txt \
 && pip install -r /tmp/deps.txt

# 2. The package itself, with that backend and no dependencies; then the venv needs pip and setuptools no more.
COPY README.md ./
COPY mockserver ./mockserver
COPY client ./client
COPY contracts ./contracts
RUN pip install --no-deps --no-build-isolation . \
 && pip uninstall -y -q pip setuptools

# ---- the image: the base, a user, the venv ----------------------------------------------------------------
FROM ${BASE}
RUN useradd --no-log-init --uid 10001 --no-create-home --shell /usr/sbin/nologin sd35
COPY --from=build /opt/venv /opt/venv
# Every option stays overridable through its SD35_MOCK_* variable (docker run -e SD35_MOCK_...=...).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SD35_MOCK_HOST=0.0.0.0 \
    SD35_MOCK_PORT=8080
EXPOSE 8080
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# No curl in the image: Python asks /healthz (served even with --no-control-plane or a control token, and never
# journaled or counted: a health check is not the app's traffic) on SD35_MOCK_PORT, bypassing any HTTP(S)_PROXY.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('SD35_MOCK_PORT', '8080'), timeout=2)"]
# Exec form: the mock is PID 1 and gets `docker stop`'s SIGTERM itself (it exits 0 at once).
# Arguments after the image name are the mock's options: docker run sd35-twin --pending-seconds 0
ENTRYPOINT ["python", "-m", "sd35_twin.mockserver"]
CMD []
