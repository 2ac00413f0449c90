"""The README stays true: its spec reference is the one the validating models generate, and it
shows the two set-up commands that .ci/run and a new user rely on."""

from conftest import REPO

from iptkit.pipelines.reference import spec_reference


def test_readme_spec_reference_is_current():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert spec_reference() in readme, "README's spec reference is stale: paste `iptkit reference`"


def test_readme_shows_the_two_commands_and_ci_runs_make_test():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ci[-1].strip() == "make test"
