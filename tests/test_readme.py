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
