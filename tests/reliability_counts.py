"""The counts docs/RELIABILITY.md quotes, taken from the test files themselves.

    python -m tests.reliability_counts      (from the repository root)

Prints markdown: tests collected per reliability file, the bad-input catalogue by kind and by command (and which
commands have not landed), and the hypothesis properties with their examples per run.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ["test_bad_input_catalogue.py", "test_properties.py", "test_interruption.py", "test_numerical_safety.py",
         "test_security.py"]


def collected(file: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(HERE / file)], capture_output=True, text=True, cwd=HERE.parent,
                         env=dict(os.environ, PYTHONWARNINGS="ignore")).stdout
    return [line for line in out.splitlines() if "::" in line]


def main() -> None:
    from tests import test_bad_input_catalogue as cat
    from tests import test_properties as props
    from tests.support.cli_support import LANDED

    print("| file | tests collected |\n|---|---|")
    total = 0
    for f in FILES:
        n = len(collected(f))
        total += n
        print(f"| tests/{f} | {n} |")
    print(f"| total | {total} |\n")

    cases = cat.CASES
    print(f"Bad-input catalogue: {len(cases)} rows, {len({c.item for c in cases})} kinds of bad input, "
          f"{len({c.command for c in cases})} commands.\n")
    print("| kind of bad input | rows |\n|---|---|")
    for item, n in sorted(collections.Counter(c.item for c in cases).items()):
        print(f"| {item} | {n} |")
    print("\n| command | rows | landed |\n|---|---|---|")
    for cmd, n in sorted(collections.Counter(c.command for c in cases).items()):
        print(f"| {cmd} | {n} | {'yes' if cmd in LANDED else 'no (rows skipped)'} |")
    unreadable = sum(1 for c in cases if "unreadable" in c.needs)
    mknod = sum(1 for c in cases if "mknod" in c.needs)
    print(f"\nRows that need a user chmod 000 can stop (skipped when run as root): {unreadable}")
    print(f"Rows that make a device node with os.mknod (skipped where the user may not): {mknod}\n")

    ids = [line.split("::", 1)[1].split("[", 1)[0] for line in collected("test_bad_input_catalogue.py")]
    print("Issue 24, classes 1-3 and `live` SIGTERM (their block of the catalogue file):\n")
    print("| class | tests |\n|---|---|")
    for name, tests in cat.ISSUE24_BADIO_A.items():
        print(f"| {name} | {sum(1 for i in ids if i in tests)} |")
    print()

    print("| property | examples per run |\n|---|---|")
    examples = 0
    for name in sorted(dir(props)):
        fn = getattr(props, name)
        if name.startswith("test_") and hasattr(fn, "hypothesis"):
            n = fn._hypothesis_internal_use_settings.max_examples
            examples += n
            print(f"| {name} | {n} |")
    print(f"| total | {examples} |")


if __name__ == "__main__":
    main()
