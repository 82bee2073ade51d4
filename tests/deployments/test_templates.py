"""The container job templates as a worker fills them for a branch, and the image they name (Docker is not
run here: the files are checked against each other and rendered the way Prefect renders them)."""

import json
import re

import pytest
from prefect.utilities.templating import apply_values

from paft_core import paths
from tasks.remote import gpus_for
from tests import tiny

TEMPLATES = paths.PROJECT_ROOT / "deployments"
DOCKERFILE = (paths.PROJECT_ROOT / "Dockerfile").read_text()


def rendered(kind: str, job_variables: dict) -> dict:
    """The job configuration a worker of `kind` builds: variable defaults, then this run's job variables."""
    template = json.loads((TEMPLATES / f"{kind}-job-template.json").read_text())
    defaults = {name: field["default"] for name, field in template["variables"]["properties"].items()
                if "default" in field}
    return apply_values(template["job_configuration"], {**defaults, **job_variables})


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_a_kubernetes_branch_pod_asks_for_one_gpu_per_process(tiny_base, processes):
    spec = tiny.spec(tiny_base, sft__train__processes=processes)
    template = json.loads((TEMPLATES / "kubernetes-job-template.json").read_text())
    job = rendered("kubernetes", gpus_for(template, spec.sft.train))
    (container,) = job["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == processes
    assert container["image"] == "paft:latest"
    assert container["volumeMounts"] == [{"name": "paft-state", "mountPath": "/paft"}]
    volumes = job["job_manifest"]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == "paft-state"
    assert job["env"]["PAFT_HOME"] == "/paft"


def test_a_pool_without_a_gpu_variable_gets_no_gpu_request(tiny_base):
    spec = tiny.spec(tiny_base, sft__train__processes=2)
    docker = json.loads((TEMPLATES / "docker-job-template.json").read_text())
    assert gpus_for(docker, spec.sft.train) == {}
    job = rendered("docker", {})
    assert job["image"] == "paft:latest" and job["volumes"] == ["paft-state:/paft"]
    assert job["env"]["PAFT_HOME"] == "/paft"


def test_the_image_the_templates_run_is_the_dockerfile_installed_as_the_readme_does():
    assert "docker build -t paft:latest" in DOCKERFILE  # the tag both templates default to
    assert re.search(r"^RUN .*make setup", DOCKERFILE, re.M | re.S)  # the README's set-up, nothing else
    assert re.search(r"PAFT_HOME=/paft\b", DOCKERFILE) and "VOLUME /paft" in DOCKERFILE
    assert "torch==2.13.0" in DOCKERFILE and "torch==2.13.0" in (paths.PROJECT_ROOT / "Makefile").read_text()
    ignored = (paths.PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".paft", ".prefect"} <= set(ignored)  # no local state baked into the image
