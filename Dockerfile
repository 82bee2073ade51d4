# PAFT for the Docker and Kubernetes work pools (deployments/*-job-template.json run `paft:latest`):
#   docker build -t paft:latest .
# installed the way the README does (`make setup`). CPU by default; for NVIDIA GPUs take torch's CUDA wheels:
#   docker build -t paft:latest --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# (the host needs the NVIDIA container toolkit). Stage folders live in the volume mounted at /paft.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN apt-get update && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/paft
COPY . .
# torch from its index first: `make setup` then finds torch==2.13.0 installed and keeps this build.
RUN python -m venv .venv && .venv/bin/pip install --quiet torch==2.13.0 --index-url "$TORCH_INDEX" \
    && make setup && rm -rf /root/.cache/pip
ENV PATH=/opt/paft/.venv/bin:$PATH \
    PAFT_HOME=/paft \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
VOLUME /paft
CMD ["paft", "--help"]
