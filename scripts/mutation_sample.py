"""The mutants scripts/mutation.sh runs for one module, and the module's score over them.

Run by scripts/mutation.sh inside the module's scratch copy (var/mutation/<module>/), with the
venv's Python (mutmut 3.8.1, pinned: ``pick`` uses its generation functions, which are not a
public API; after an upgrade, check them here first).

``pick PERCENT``: create the mutants (as ``mutmut run`` does first), choose the sample and
write it to ``sample.txt``, one name per line, and the names still to be run to ``to-run.txt``:
all but those killed (or timed out) and those mutmut skips. Survivors and "no tests" included: new
tests may kill them now.

``score MODULE SECONDS PERCENT``: the score over the sample, from mutmut's result files.

The sample: a mutant is in it when the SHA-256 of its name falls in the first PERCENT of the
range. Random in effect (independent of file, function and kind of mutation), and the same
mutants every run while the code is the same, so a re-run resumes and a survivor stays
chosen until a test kills it. 100 is every mutant.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def in_sample(name: str, percent: float) -> bool:
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return digest < percent / 100 * 16**8


def results() -> dict[str, int | None]:
    """Every mutant's exit code (None: not run yet), from mutmut's ``mutants/**/*.meta`` files."""
    codes: dict[str, int | None] = {}
    for meta in Path("mutants").rglob("*.py.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def pick(percent: float) -> None:
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir

    set_mutant_under_test("mutant_generation")
    Path("mutants").mkdir(exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    create_mutants(max_children=2)
    codes = results()
    sample = sorted(name for name in codes if in_sample(name, percent))
    Path("sample.txt").write_text("".join(f"{name}\n" for name in sample))
    settled = {"killed", "timeout", "skipped"}
    to_run = [name for name in sample if codes[name] is None or status_by_exit_code[codes[name]] not in settled]
    Path("to-run.txt").write_text("".join(f"{name}\n" for name in to_run))


def score(module: str, seconds: int, percent: float) -> None:
    from mutmut.stats import status_by_exit_code

    codes = results()
    sample = Path("sample.txt").read_text().split()
    statuses = [status_by_exit_code[codes.get(name)] for name in sample]
    count = {status: statuses.count(status) for status in set(statuses)}
    # A timeout counts as killed (the change hangs a test); a mutant no selected test reaches
    # ("no tests") as not killed; mutmut's "skipped" (# pragma: no mutate) not at all.
    killed = count.get("killed", 0) + count.get("timeout", 0)
    tested = len(statuses) - count.get("skipped", 0)
    share = f"{100 * killed / tested:.1f}%" if tested else "n/a"
    of = "all" if percent >= 100 else f"a {percent:g}% sample of {len(codes)}"
    print(
        f"{module}: {share} killed ({killed} of {tested} mutants, {of}; survived {count.get('survived', 0)}, "
        f"no tests {count.get('no tests', 0)}, timeout {count.get('timeout', 0)}, "
        f"suspicious {count.get('suspicious', 0)}, not run {count.get('not checked', 0)}) in {seconds} s"
    )


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["pick", percent]:
            pick(float(percent))
        case ["score", module, seconds, percent]:
            score(module, int(seconds), float(percent))
        case _:
            sys.exit(__doc__)
