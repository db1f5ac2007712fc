"""List the Docker build context of deploy/Dockerfile and copy it to DEST (run by deploy/check/run.sh).

The context is what `docker build .` would send from the repository root under .dockerignore, computed with
docker-py's implementation of the .dockerignore rules (docker.utils.build.exclude_paths). It must hold go.mod,
go.sum and the Go sources of schemas/ and the three stages, and nothing under .cache/, bin/ or .git. run.sh then
builds the three binaries from DEST exactly as the Dockerfile's build stage does, which proves the context is
enough to build them.

usage: context.py REPO DEST
"""

import os
import shutil
import sys

from docker.utils.build import exclude_paths

MUST_EXCLUDE = (".cache/", "bin/", ".git/", ".git")
MUST_INCLUDE = ("go.mod", "go.sum", "schemas/codec.go", "ingest/cmd/ingest/main.go",
                "processor/cmd/processor/main.go", "sink/cmd/sink/main.go")


def main(repo, dest):
    with open(os.path.join(repo, ".dockerignore")) as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    included = sorted(p for p in exclude_paths(repo, patterns, dockerfile="deploy/Dockerfile")
                      if os.path.isfile(os.path.join(repo, p)))
    errors = []
    for p in included:
        if p.startswith(MUST_EXCLUDE) or p == ".git":
            errors.append(f"in the build context but must not be: {p}")
        if p.endswith("_test.go"):
            errors.append(f"test file in the build context: {p}")
    for p in MUST_INCLUDE:
        if p not in included:
            errors.append(f"missing from the build context: {p}")
    for e in errors:
        print("context: " + e, file=sys.stderr)
    if errors:
        return 1
    shutil.rmtree(dest, ignore_errors=True)
    size = 0
    for p in included:
        os.makedirs(os.path.join(dest, os.path.dirname(p)), exist_ok=True)
        shutil.copy2(os.path.join(repo, p), os.path.join(dest, p))
        size += os.path.getsize(os.path.join(repo, p))
    print(f"context: {len(included)} files, {size / 1024:.0f} KiB (nothing from .cache/, bin/, .git)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
