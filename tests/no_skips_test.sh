#!/usr/bin/env bash
# Fails when a test can skip itself: ctest counts a GTEST_SKIP as a pass, so a missing test
# dependency would read as green. Tests assert their dependencies instead (scripts/test installs
# them through deploy/bootstrap.sh); GPU-only suites are excluded by their `gpu` label.
set -euo pipefail
cd "$(dirname "$0")"
if hits=$(grep -rn --include='*.cc' --include='*.h' --include='*.sh' --include='*.py' \
          -E 'GTEST_SKIP|exit 77|skipTest|unittest\.skip|SkipTest|pytest\.skip' . |
          grep -v '^./no_skips_test.sh:'); then
  echo "FAIL: tests that skip themselves (make a missing dependency fail instead):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "no test skips itself"
