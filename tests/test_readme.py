"""The README's examples run as written."""

import re

from tests.helpers import REPO

pytest_plugins = ["pytester"]


def readme_block(after: str, language: str) -> str:
    text = (REPO / "README.md").read_text("utf-8")
    start = text.index(after)
    return re.search(rf"```{language}\n(.*?)```", text[start:], re.S).group(1)


def test_the_fixture_example_passes_as_written(pytester):
    pytester.makepyfile(test_example=readme_block("**In your own pytest suite**", "python"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:sd35_contracts")
    result.assert_outcomes(passed=1)


def test_the_no_server_example_passes_as_written(pytester):
    pytester.makepyfile(test_example=readme_block("**No server at all**", "python"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:sd35_contracts")
    result.assert_outcomes(passed=2)


def test_every_line_of_the_test_kit_table_runs_as_written(sd35_mock, sd35_webhooks, valid_request):
    """Each code cell of the README's "you want / in your test" table, run against the fixtures (a job and a
    rule to refer to made first), so the table cannot drift from the API."""
    import requests

    text = (REPO / "README.md").read_text("utf-8")
    table = text[text.index("| you want | in your test |"):]
    table = table[:table.index("\n\n")]
    cells = [re.findall(r"`([^`]+)`", row.split("|")[2]) for row in table.splitlines()[2:]]
    statements = [code for row in cells for code in row if code.startswith(("sd35_mock.", "sd35_webhooks."))]
    assert len(statements) >= 12
    job_id = requests.post(f"{sd35_mock.url}/sd3_5/v1", json={**valid_request, "webhook": sd35_webhooks.url},
                           headers={"API-Key": "k"}, timeout=10).json()["id"]
    requests.get(f"{sd35_mock.url}/sd3_5/v1/status/{job_id}", headers={"API-Key": "k"}, timeout=10)
    sd35_webhooks.wait_for(1)
    sd35_mock.resend_webhook(job_id)  # a second call, for expect(2)
    scope = {"sd35_mock": sd35_mock, "sd35_webhooks": sd35_webhooks, "job_id": job_id,
             "rule": sd35_mock.add_rule({"batch_id": "readme"}, outcome="SUCCESS")}
    for code in statements:
        exec(code, scope)  # noqa: S102 - the README's own examples


def test_ci_runs_the_readmes_test_command_as_written():
    command = readme_block("On a fresh machine", "sh").strip().splitlines()[-1]
    assert command.startswith("python3 -m venv .venv") and "pytest" in command
    assert command in (REPO / ".ci" / "run").read_text("utf-8").splitlines()
