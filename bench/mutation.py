"""Mutation testing of one module with mutmut 3, run as ``python -m bench.mutation mockserver/rules.py``.

Why a stage: mutmut copies ``source_paths`` into ``mutants/`` and names each mutant after its file's path, while
its trampolines fire only when that name equals the module's ``__name__``. Our folders install as
``sd35_twin.mockserver`` etc. (a package-dir mapping), so mutating ``mockserver/rules.py`` in place would name
mutants ``mockserver.rules.*`` and none would ever run. The stage, ``build/mutation/<module>/``, holds
``src/sd35_twin/{mockserver,client}`` as symlinks to the folders (mutmut strips ``src.``: the names match), the
tests, and a ``pyproject.toml`` that is ours plus the module's ``only_mutate`` and test files from
``[tool.sd35_twin.mutation]``. mutmut puts ``mutants/src`` first on ``sys.path``, so the mutated copy is the one
imported (the editable install's finder comes after the path finder). Not in CI: it takes minutes per module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGE = REPO / "build" / "mutation"
PACKAGES = ("mockserver", "client")
# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code), grouped as the score counts them.
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "killed", -11: "segfault", -9: "segfault"}


def _toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def stage(module: str, tests: list[str]) -> Path:
    """The stage for ``module`` (``mockserver/rules.py``), made or refreshed; its pyproject rewritten."""
    where = STAGE / module.replace("/", "-").removesuffix(".py")
    (where / "src" / "sd35_twin").mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        link = where / "src" / "sd35_twin" / package
        if not link.is_symlink():
            link.symlink_to(REPO / package, target_is_directory=True)
    if not (where / "tests").is_symlink():
        (where / "tests").symlink_to(REPO / "tests", target_is_directory=True)
    text = (REPO / "pyproject.toml").read_text("utf-8")
    base = tomllib.loads(text)["tool"]["mutmut"]
    head = text[:text.index("[tool.mutmut]")]  # ours, less the mutation sections (they come last)
    settings = {**base, "only_mutate": [f"src/sd35_twin/{module}"], "pytest_add_cli_args_test_selection": tests}
    body = "\n".join(f"{key} = {_toml_value(value)}" for key, value in settings.items())
    (where / "pyproject.toml").write_text(f"{head}[tool.mutmut]\n{body}\n", "utf-8")
    return where


def statuses(where: Path, module: str) -> dict[str, int]:
    """Each mutant's exit code, from mutmut's ``.meta`` file of ``module``."""
    meta = where / "mutants" / "src" / "sd35_twin" / (module + ".meta")
    return json.loads(meta.read_text("utf-8"))["exit_code_by_key"]


# A schema description is documentation (it reaches /openapi.json as prose): a mutant that only garbles one, or
# the word "description" itself, changes no behaviour. Error messages are not in this class: they are what a
# user reads to fix a request, and tests pin them whole.
DESCRIPTION = re.compile(r'"description": "([^"]*)"|bounded_integer\("\w+", "([^"]*)"\)')


CODECS = {"utf-8", "utf-16", "ascii", "latin-1"}


def _changed_literal(old: str, new: str) -> str | None:
    """The string literal of ``old`` that holds every character ``new`` changes, if one does."""
    p = 0
    while p < min(len(old), len(new)) and old[p] == new[p]:
        p += 1
    q = 0
    while q < min(len(old), len(new)) - p and old[-1 - q] == new[-1 - q]:
        q += 1
    left, right = old.rfind('"', 0, p + 1), old.find('"', len(old) - q - 1 if q else len(old) - 1)
    if left == -1 or right <= left or '"' in old[left + 1:max(right, left + 1)]:
        return None
    return old[left + 1:right]


def classify(module: str, changed: list[str]) -> str:
    """``text-only`` when each changed line only changes a schema description; ``equivalent`` when it only changes
    the case of a codec's name (Python looks codecs up in any case: "UTF-8" is "utf-8"); else ``behaviour``, for a
    person to judge (docs/mutation.md lists those judged equivalent)."""
    texts = {a or b for a, b in DESCRIPTION.findall((REPO / module).read_text("utf-8"))} | {"description"}
    removed = [line[1:] for line in changed if line.startswith("-")]
    added = [line[1:] for line in changed if line.startswith("+")]
    if removed and len(removed) == len(added) and all(
            o != n and o.lower() == n.lower() and (_changed_literal(o, n) or "").lower() in CODECS
            for o, n in zip(removed, added)):
        return "equivalent"
    if removed and len(removed) == len(added) and all(_changed_literal(o, n) in texts for o, n in zip(removed, added)):
        return "text-only"
    return "behaviour"


def survivors(where: Path, module: str) -> list[tuple[str, str, list[str]]]:
    """Each surviving mutant: its name, its class, its changed lines (what ``mutmut show`` prints)."""
    here = os.getcwd()
    os.chdir(where)  # mutmut reads its configuration from the working directory
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        found = []
        for name, code in statuses(where, module).items():
            if code == 0:
                diff = get_diff_for_mutant(name, path=f"src/sd35_twin/{module}").splitlines()
                changed = [line for line in diff[2:] if line[:1] in "+-"]
                found.append((name, classify(module, changed), changed))
        return found
    finally:
        os.chdir(here)


def summary(where: Path, module: str) -> str:
    codes = statuses(where, module)
    counts = Counter(KILLED.get(code, {0: "survived", None: "not checked"}.get(code, f"other({code})"))
                     for code in codes.values())
    kinds = Counter(kind for _, kind, _ in survivors(where, module))
    total, killed = len(codes), sum(1 for code in codes.values() if code in KILLED)
    behaviour = total - kinds["text-only"] - kinds["equivalent"]
    return (f"{module}: {total} mutants, {killed} killed ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))});"
            f" survivors: {kinds['text-only']} text-only, {kinds['equivalent']} equivalent by rule, "
            f"{kinds['behaviour']} to judge; score {100 * killed / max(total, 1):.1f} % of all, "
            f"{100 * killed / max(behaviour, 1):.1f} % of those not text-only or equivalent by rule")


def main(argv: list[str] | None = None) -> int:
    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["sd35_twin"]["mutation"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", choices=sorted(config), help="the module to mutate")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results (remove the stage's mutants/)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1: be nice)")
    parser.add_argument("--survivors", action="store_true", help="print the last run's survivors' changes, no run")
    parser.add_argument("--recheck", action="store_true",
                        help="run the last run's survivors that may change behaviour again, and only them")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="these test files instead of the configured ones (a quicker, lower bound)")
    args = parser.parse_args(argv)
    where = stage(args.module, args.tests or config[args.module])
    if args.survivors:
        for name, kind, changed in survivors(where, args.module):
            print(f"# {name} ({kind})", *changed, sep="\n")
        print(summary(where, args.module))
        return 0
    if args.fresh and (where / "mutants").exists():
        subprocess.run(["rm", "-rf", str(where / "mutants")], check=True)
    # text-only and equivalent-by-rule survivors stay survivors whatever the tests: only the others are run again
    names = [name for name, kind, _ in survivors(where, args.module) if kind == "behaviour"] if args.recheck else []
    mutmut = Path(sys.executable).with_name("mutmut")
    started = time.monotonic()
    with open(where / "mutmut.log", "w") as log:  # its progress line redraws per mutant: kept out of the terminal
        run = subprocess.run(["nice", "-n", "15", str(mutmut), "run", "--max-children", str(args.max_children), *names],
                             cwd=where, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    took = time.monotonic() - started
    print(f"{summary(where, args.module)}; {took:.0f} s wall")
    print(f"survivors: python -m bench.mutation {args.module} --survivors (log: {where.relative_to(REPO)}/mutmut.log)")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
