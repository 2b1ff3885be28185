#!/usr/bin/env python3
"""The Debian packages of the test harnesses, from one list (debian-packages.tsv beside this).

  deps.py missing HARNESS...   print the programs that are missing, one per line (exit 0)
  deps.py install HARNESS...   install the packages of the missing programs (root; idempotent)
  deps.py packages HARNESS...  print the packages of those harnesses (for purging)

Harnesses: lab, e2e, packaging, or `all`. The packages' init scripts are never allowed to start
a daemon (policy-rc.d answers 101 while apt runs): every test starts its own servers.
Exit codes: 0 done, 2 bad usage, 77 cannot install (not root, or apt failed).
"""

import fcntl
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LIST = os.path.join(HERE, "debian-packages.tsv")
DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
LOCK = "/tmp/regcheck-deps.lock"


def table():
    """[(harness, program, package)] in file order."""
    rows = []
    with open(LIST) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3:
                raise SystemExit(f"{LIST}:{n}: expected 'harness program package', got {line!r}")
            rows.append(tuple(parts))
    return rows


def select(harnesses):
    rows = table()
    known = sorted({r[0] for r in rows})
    if not harnesses:
        raise SystemExit(f"name at least one harness: {', '.join(known)} or all")
    if "all" in harnesses:
        return rows
    bad = [h for h in harnesses if h not in known]
    if bad:
        raise SystemExit(f"unknown harness {', '.join(bad)} (known: {', '.join(known)})")
    return [r for r in rows if r[0] in harnesses]


def which(program):
    for d in DIRS:
        p = os.path.join(d, program)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(program)


def missing(rows):
    """{program: package} of the programs that are not installed."""
    return {prog: pkg for _, prog, pkg in rows if not which(prog)}


def install(rows):
    if not missing(rows):
        return 0
    if os.geteuid() != 0:
        print("deps: not root: cannot install " + " ".join(sorted(set(missing(rows).values()))),
              file=sys.stderr)
        return 77
    # One installer at a time (test binaries may start together).
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        need = missing(rows)
        if not need:
            return 0
        pkgs = sorted(set(need.values()))
        print(f"deps: installing {' '.join(pkgs)}", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        policy = "/usr/sbin/policy-rc.d"
        made_policy = not os.path.exists(policy)
        if made_policy:
            with open(policy, "w") as f:
                f.write("#!/bin/sh\n# regcheck tests: never start a daemon from a package\nexit 101\n")
            os.chmod(policy, 0o755)
        try:
            # A fresh machine has no package lists yet.
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            r = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y",
                                "-qq", "--no-install-recommends"] + pkgs,
                               env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        finally:
            if made_policy:
                os.unlink(policy)
        if r.returncode != 0:
            print(f"deps: apt-get install {' '.join(pkgs)} failed ({r.returncode}): "
                  f"{r.stderr.strip()[-2000:]}", file=sys.stderr)
            return 77
        still = missing(rows)
        if still:
            print(f"deps: still missing after the install: {', '.join(sorted(still))}",
                  file=sys.stderr)
            return 77
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] not in ("missing", "install", "packages"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rows = select(argv[2:])
    if argv[1] == "missing":
        for prog, pkg in missing(rows).items():
            print(f"{prog} ({pkg})")
        return 0
    if argv[1] == "packages":
        print("\n".join(sorted({pkg for _, _, pkg in rows})))
        return 0
    return install(rows)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
