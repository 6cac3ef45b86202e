#!/usr/bin/env bash
# Start skew of elektronn-sched's gang starts (issue 12): GANGS groups of 4 one-GPU members on 4
# daemons with one fake GPU each (so the groups start one after another), on loopback. The skew
# of a gang start is the spread of its jobs' first StatusUpdate (after their first training
# step), as the daemons stamped them in their event logs (workers report every step:
# --worker-status-interval 0). Prints each skew, the median and the worst, and the lateness of
# the first step after the common start. Not a CI test (timing).
# Usage: bench/sched_skew.sh [BUILD_DIR] [GANGS]   (default build/release, 10)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build/release}" && pwd)
gangs=${2:-10}
sched=$build/scheduler/elektronn-sched
elektronnd=$build/server/elektronnd
worker=$build/worker/elektronn-worker
elektronn=$build/client/elektronn
export PYTHONPATH=$build/python OMP_NUM_THREADS=1
work=$(mktemp -d /tmp/elk_sched_skew.XXXXXX)
source "$src/tests/scheduler/sched_lib.sh"
export ELEKTRONN_SCHED_STATE=$work/sched ELEKTRONN_CLIENT=$elektronn

capacity=1 start_daemons 4 1
make_tiny_job
{
  echo "experiment = 'skew'"
  echo "defaults = {job = 'job.lua', gpus = 1, cpu_threads = 1, set = {n_steps = 5}}"
  echo "members = {}"
  echo "for g = 1, $gangs do"
  echo "  for m = 1, 4 do"
  echo "    members[#members + 1] = {name = ('g%d-m%d'):format(g, m), group = 'g' .. g}"
  echo "  end"
  echo "end"
} > "$work/skew.lua"
start=$(date +%s.%N)
"$sched" run "$work/skew.lua" --hosts "$hosts" --poll 0.2 --start-margin 3 --backoff 0.3 \
  >"$work/sched.log" 2>&1 || fail "run: $(cat "$work/sched.log")"
echo "$gangs gang starts of 4 members on 4 daemons: $(echo "$(date +%s.%N) - $start" | bc) s in all"
"$py" - "$src/tests/scheduler" ${hosts//,/ } <<'PY'
import json, subprocess, sys
jobs = json.loads(subprocess.check_output(
    [sys.executable, sys.argv[1] + "/sched_report.py", "jobs"] + sys.argv[2:]))
groups = {}
for j in jobs:
    groups.setdefault(j["start_at"], []).append(j)
skews, late = [], []
for start_at, g in sorted(groups.items()):
    assert len(g) == 4 and all(j["first_status"] for j in g), g
    t = [j["first_status"] for j in g]
    skews.append(max(t) - min(t))
    late += [x - start_at for x in t]
    print(f"gang at {start_at:.3f}: skew {1e3 * skews[-1]:6.1f} ms, first steps "
          f"{', '.join(f'{1e3 * (x - start_at):.0f}' for x in sorted(t))} ms after the start")
skews.sort()
late.sort()
print(json.dumps({"gang_starts": len(skews), "median_skew_ms": round(1e3 * skews[len(skews) // 2], 1),
                  "worst_skew_ms": round(1e3 * skews[-1], 1),
                  "median_first_step_after_start_ms": round(1e3 * late[len(late) // 2], 1),
                  "worst_first_step_after_start_ms": round(1e3 * late[-1], 1)}))
PY
