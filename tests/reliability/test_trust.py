"""What iptkit trusts, checked (README, "Guarantees"): a spec is data, never code. YAML is
safe-loaded, so a `!!python` tag is a located spec error and runs nothing; model stages never
run a model repository's own code unless the spec sets `trust_remote_code`. Checkpoints are
loaded with `weights_only=True` (tests/test_trainer.py,
`test_a_checkpoint_that_would_run_code_is_refused`)."""

import pytest

from iptkit.pipelines.cli import main
from iptkit.transforms.inference.core import InferenceOptions


@pytest.mark.parametrize(
    "tag",
    ["!!python/object/apply:os.system [touch {marker}]", "!!python/name:os.system"],
)
def test_a_code_tag_in_a_spec_is_an_error_and_runs_nothing(tmp_path, capsys, tag):
    marker = tmp_path / "ran"
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "seed: 1\noutput: out\nsources:\n  - {name: a, format: jsonl, path: a.jsonl}\n"
        f"description: {tag.format(marker=marker)}\n"
    )
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "spec.yaml:5" in err and "Traceback" not in err
    assert not marker.exists()


def test_model_code_is_not_run_unless_the_spec_says_so(tmp_path):
    assert InferenceOptions(model=str(tmp_path)).model_spec().trust_remote_code is False
