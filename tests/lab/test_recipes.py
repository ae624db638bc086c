"""The recipes of docs/recipes.md, run in the lab as written (the capitals filled in, `inventory.py`
the test's own inventory): a recipe that drifts from what works fails here. Their fab commands run
as written in tests/lab/test_fabfile.py."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import openai
import pytest

from lab import control
from lab.fleet import fleet_data, write_inventory
from lab.topology import BACKENDS, GATEWAY_PORT, OLLAMA_PORT
from tests.lab.conftest import REPO, TEST_GATEWAY, deploy

pytestmark = pytest.mark.lab
RECIPES = (REPO / "docs/recipes.md").read_text()
NEW_MODEL, NEW_TAG = "qwen2.5-7b", "qwen2.5:7b"  # the recipe's own example


def commands(title: str) -> list[str]:
    """The lines of the recipe's shell blocks, in order."""
    section = RECIPES.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)
            for line in block.strip().splitlines()]


def run(command: str, inventory: Path, **fill: str) -> subprocess.CompletedProcess:
    """A recipe's command as written, with the capitals filled in and the test's inventory."""
    for word, value in fill.items():
        command = re.sub(rf"\b{word}\b", value, command)
    command = command.replace("inventory.py", str(inventory))
    return subprocess.run(command, shell=True, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "FABRIC_LITELLM_INVENTORY": str(inventory)}, stdin=subprocess.DEVNULL)


@pytest.fixture
def added_model(first_deploy, deploy_dir):
    """Afterwards the lab as it was: the gateway deployed without the model, the backends without it."""
    yield
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-4000:]
    for backend in BACKENDS:
        subprocess.run(["curl", "-s", "-X", "DELETE", f"http://{backend.address}:{OLLAMA_PORT}/api/delete",
                        "-d", f'{{"model": "{NEW_TAG}"}}'], capture_output=True, timeout=30)


def test_add_a_model(added_model, tmp_path):
    pull, checks, deploy_command, health = commands("Add a model")
    assert pull.startswith("curl") and "/api/pull" in pull and deploy_command.endswith("deploy.py")
    data = fleet_data()
    inventory = write_inventory(
        tmp_path / "inventory.py", [TEST_GATEWAY],
        litellm_models={**data["litellm_models"], NEW_MODEL: {"tag": NEW_TAG, "context_window": 4096}},
        litellm_backends={name: {**spec, "models": [*spec["models"], NEW_MODEL]}
                          for name, spec in data["litellm_backends"].items()},
    )
    refused = run(checks, inventory)  # before the pull: the preflight names the missing model
    assert refused.returncode != 0 and NEW_TAG in refused.stdout, refused.stdout + refused.stderr
    for backend in BACKENDS:  # step 1, on each backend that is to serve it
        pulled = run(pull, inventory, BACKEND=backend.address, TAG=NEW_TAG)
        assert pulled.returncode == 0 and '"success"' in pulled.stdout, pulled.stdout + pulled.stderr
    for command in (checks, deploy_command):
        done = run(command, inventory)
        assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
    said = done.stdout + done.stderr  # pyinfra reports on stderr
    assert "switch-over:" in said and "gateway verified" in said, said[-3000:]
    client = openai.OpenAI(base_url=f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1",
                           api_key=control.master_key(), max_retries=0)
    assert NEW_MODEL in {m.id for m in client.models.list().data}
    answer = client.chat.completions.create(model=NEW_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    shown = run(health, inventory)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith(NEW_MODEL)]
    assert sorted(row[1] for row in rows) == sorted(b.name for b in BACKENDS), shown.stdout
    assert all(row[2:4] == [NEW_TAG, "yes"] for row in rows), shown.stdout  # present on each
    assert any(row[4] == "yes" and row[5] == "4096" for row in rows), shown.stdout  # loaded with its window
