"""Fail fast, in one line, when a `hub` evaluation cannot read its datasets.

Left alone, `datasets` retries an unreachable hub for about 30 s and then raises from deep inside
lm-eval; a gated dataset fails only once its task loads. One short request per dataset settles it first.
"""

from huggingface_hub import constants, get_token
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from paft_core.errors import DataError
from paft_core.evaluation.suites import Suite

TIMEOUT_S = 10
SWITCH = "or evaluate on the project's offline twins: evaluation.source: offline (paft eval --source offline)"


def check(suites: list[Suite]) -> None:
    """Raise DataError naming the first dataset the hub will not serve, and how to go offline instead."""
    datasets = list(dict.fromkeys(b.dataset for s in suites for b in s.benchmarks))
    gated = [b.dataset for s in suites for b in s.benchmarks if b.gated]
    if constants.is_offline_mode():
        raise DataError(f"source 'hub' needs {datasets[0]} from the Hugging Face Hub, but HF_HUB_OFFLINE "
                        f"is set; unset it, {SWITCH}")
    token = get_token()
    if gated and token is None:
        raise DataError(_gated(gated[0]))
    for dataset in datasets:
        _probe(dataset, token)


def _probe(dataset: str, token: str | None) -> None:
    url = f"{constants.ENDPOINT}/api/datasets/{dataset}/auth-check"
    try:
        response = get_session().get(url, headers=build_hf_headers(token=token), timeout=TIMEOUT_S)
        hf_raise_for_status(response)
    except GatedRepoError:
        raise DataError(_gated(dataset)) from None
    except RepositoryNotFoundError:
        raise DataError(f"hub dataset {dataset} not found (or private for this token)") from None
    except HfHubHTTPError as err:
        raise DataError(f"hub refused {dataset}: {str(err).splitlines()[0]}") from None
    except Exception as err:  # httpx transport errors: DNS, refused, timeout
        raise DataError(f"cannot reach the Hugging Face Hub for {dataset} ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'no answer'}); {SWITCH}") from None


def _gated(dataset: str) -> str:
    return (f"{dataset} is a gated hub dataset: accept its terms on its hub page and set HF_TOKEN "
            f"(or run `hf auth login`); or leave its benchmark out with evaluation.benchmarks")
