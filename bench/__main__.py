"""`python -m bench [MODULE ...]`: run the `main()` of every module of this package (or of the named
ones), one after the other, in name order."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = argv or modules()
    unknown = sorted(set(names) - set(modules()))
    if unknown:
        print(f"no such benchmark: {', '.join(unknown)}; there are: {', '.join(modules())}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if entry is None:
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        try:
            entry()
        except KeyboardInterrupt:
            raise
        except BaseException:  # one broken benchmark does not hide the others
            traceback.print_exc()
            failed.append(name)
        print(f"=== bench.{name}: {time.monotonic() - started:.1f} s ===", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
