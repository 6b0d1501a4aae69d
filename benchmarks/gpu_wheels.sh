#!/usr/bin/env bash
# Download the wheels benchmarks/gpu_check.sh needs on an image without pydantic (Python 3.12,
# x86-64) into .whl/, which .git/info/exclude should ignore: `echo /.whl/ >> .git/info/exclude`.
set -euo pipefail
for pkg in pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$pkg"
done
ls .whl
