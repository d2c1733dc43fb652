"""Every kind of program the system generates still trains and predicts inside the allow-listed
runtime (sandbox.runtime_view) on both hardened backends: the bundled seeds, DARTS/EdgeNES and
RACHEL renderings, a closed-form feature-bagging variant, on image and tabular tasks."""
from __future__ import annotations

import numpy as np
import pytest

from sandbox import Limits, make_sandbox
from tests.label_needles import write_small_table


def _programs() -> dict[str, tuple[str, str]]:
    """name -> (task, source)."""
    from agent.proposers.closed_form import set_feature_fraction
    from agent.proposers.darts.genotype import random_genotype, render
    from agent.proposers.rachel.subnetworks import Layer, SubnetSpec, render_program
    from evaluator.tasks import PROGRAMS_DIR
    seed = {p.stem: p.read_text() for p in PROGRAMS_DIR.glob("*.py")}
    return {
        "seed mlp": ("digits", seed["mlp"]),
        "seed cnn_small": ("digits", seed["cnn_small"]),
        "seed tabular_mlp": ("tabular", seed["tabular_mlp"]),
        "darts": ("digits", render(random_genotype(np.random.default_rng(3)), channels=4, layers=2)),
        "rachel image": ("digits", render_program(SubnetSpec("image", (Layer("conv", 8), Layer("residual", 8))))),
        "rachel dense": ("tabular", render_program(SubnetSpec("dense", (Layer("dense", 16),
                                                                        Layer("dense_residual", 16))))),
        "closed-form bagging": ("tabular", set_feature_fraction(seed["tabular_mlp"], 0.5)),
    }


PROGRAM_NAMES = ["seed mlp", "seed cnn_small", "seed tabular_mlp", "darts", "rachel image", "rachel dense",
                 "closed-form bagging"]


def test_program_list_is_complete():
    assert sorted(_programs()) == sorted(PROGRAM_NAMES)


@pytest.fixture(scope="module")
def evaluators(request, cache_dir, tmp_path_factory):
    """(backend, task) -> Evaluator, one epoch on a small training subset."""
    from evaluator.evaluate import Evaluator
    from evaluator.tasks import ProxyBudget, get_task
    csv = write_small_table(tmp_path_factory.mktemp("table") / "table.csv")
    made = {}

    def get(kind: str, task_name: str):
        if (kind, task_name) not in made:
            if kind == "docker":
                sandbox = request.getfixturevalue("docker_sandbox")
            else:
                sandbox = make_sandbox("process")
                if not sandbox.isolation().get("filesystem"):
                    pytest.skip(f"no namespaces here: {sandbox.isolation()['problems']}")
            task = get_task(task_name, data_path=str(csv) if task_name == "tabular" else None)
            task = task.model_copy(update={"budget": ProxyBudget(epochs=1, batch_size=64, train_subset=300)})
            made[kind, task_name] = Evaluator(task=task, sandbox=sandbox, limits=Limits(timeout_s=300),
                                              cache_dir=cache_dir)
        return made[kind, task_name]
    return get


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("kind", ["process", "docker"])
@pytest.mark.parametrize("name", PROGRAM_NAMES)
def test_generated_programs_run_in_the_allow_listed_runtime(kind, name, evaluators):
    task_name, source = _programs()[name]
    result = evaluators(kind, task_name).evaluate(source)
    assert result.ok, f"{kind}/{name}: {result.reason} {result.detail} {result.stderr_tail[-800:]}"
    assert result.val_probs.shape[0] == 2 and np.allclose(result.val_probs.sum(-1), 1, atol=1e-4)
