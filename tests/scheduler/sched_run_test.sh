#!/usr/bin/env bash
# `elektronn-sched run` end to end against three real daemons on loopback with two fake GPUs
# each (issue 12's sweep): eight tiny training jobs, one GPU each, run to completion and no GPU
# ever ran two jobs at once (from the daemons' event logs: tests/scheduler/sched_report.py).
# Then: status/ls (text and JSON), an ended experiment is not run again, a group of two starts
# together (one common start_at), `cancel` of a running experiment cancels its jobs and leaves
# no reservation, and bad input (no hosts, a member whose job file fails) is refused clearly.
# Usage: sched_run_test.sh ELEKTRONN_SCHED ELEKTRONND ELEKTRONN_WORKER ELEKTRONN PYTHONPATH
set -euo pipefail
sched=$1
elektronnd=$2
worker=$3
elektronn=$4
export PYTHONPATH=$5
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/elk_sched_run.XXXXXX)
source "$here/sched_lib.sh"
export ELEKTRONN_SCHED_STATE=$work/sched ELEKTRONN_CLIENT=$elektronn

capacity=2 start_daemons 3 2
make_tiny_job
cat > "$work/sweep.lua" <<'LUA'
experiment = 'sweep'
defaults = {job = 'job.lua', gpus = 1, cpu_threads = 1}
members = {}
for i, lr in ipairs{1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5} do
  members[i] = {name = ('lr%g'):format(lr), set = {lr = lr, n_steps = 30}}
end
-- two of them start together
members[1].group = 'pair'
members[2].group = 'pair'
LUA
start=$(date +%s)
"$sched" run "$work/sweep.lua" --hosts "$hosts" --poll 0.3 --start-margin 1 --backoff 0.3 \
  --json >"$work/sweep.json" 2>"$work/sched.log" || fail "run exited $?: $(cat "$work/sched.log")"
echo "sweep of 8 on 3 daemons x 2 GPUs: $(( $(date +%s) - start )) s"
grep -q "experiment 'sweep' ended: 8 succeeded, 0 failed, 0 cancelled" "$work/sched.log" ||
  fail "run: $(cat "$work/sched.log")"
"$py" -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["id"] == "sweep" and [m["state"] for m in r["members"]] == ["MEMBER_SUCCEEDED"] * 8, r
' "$work/sweep.json" || fail "run --json: $(cat "$work/sweep.json")"
"$py" "$here/sched_report.py" overlap ${hosts//,/ } >"$work/overlap.txt" ||
  fail "GPU overlap: $(cat "$work/overlap.txt")"
"$py" - "$here" ${hosts//,/ } <<'PY' || fail "jobs on the daemons"
import json, subprocess, sys
jobs = json.loads(subprocess.check_output([sys.executable, sys.argv[1] + "/sched_report.py", "jobs"]
                                          + sys.argv[2:]))
assert len(jobs) == 8, [j["name"] for j in jobs]
assert all(j["state"] == "SUCCEEDED" and j["step"] == 30 for j in jobs), jobs
assert all(len(j["gpus"]) == 1 for j in jobs), jobs
# Exactly one job per member (request ids name the member).
members = sorted(j["request_id"].split("/")[1] for j in jobs)
assert len(set(members)) == 8, members
pair = [j for j in jobs if j["request_id"].split("/")[1] in ("lr0.01", "lr0.005")]
assert len({j["start_at"] for j in pair}) == 1, pair
PY
for h in ${hosts//,/ }; do
  [ "$(active_reservations "$h")" = 0 ] || fail "ACTIVE reservations left on $h"
done

out=$("$sched" status sweep) || fail "status: $out"
[ "$(grep -c ' succeeded ' <<<"$out")" = 8 ] || fail "status: $out"
grep -qE '^lr0\.01 +pair +succeeded +127\.0\.0\.1:[0-9]+ +GPU-d[123]-[01] +jobs/[0-9]+ +30 ' \
  <<<"$out" || fail "status row: $out"
"$sched" status sweep --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["id"] == "sweep" and len(r["members"]) == 8, r
assert all(m["state"] == "MEMBER_SUCCEEDED" and "job_spec" not in m for m in r["members"]), r
' || fail "status --json"
out=$("$sched" ls) || fail "ls: $out"
grep -qE '^sweep +8 +8 succeeded +-' <<<"$out" || fail "ls: $out"
set +e
err=$("$sched" run "$work/sweep.lua" --hosts "$hosts" 2>&1); code=$?
set -e
[ $code = 4 ] && grep -q "experiment 'sweep' has ended" <<<"$err" || fail "rerun: $code $err"

# Cancel a running experiment: its job is cancelled, nothing stays reserved.
cat > "$work/long.lua" <<'LUA'
members = {{name = 'long', job = 'job.lua', gpus = 1, set = {n_steps = 100000000}}}
LUA
"$sched" run "$work/long.lua" --hosts "$(host_of 1)" --poll 0.3 --start-margin 0.5 \
  >"$work/long.log" 2>&1 &
run_pid=$!
other_pids+=($run_pid)
running() { "$sched" status long 2>/dev/null | grep -qE '^long .* running '; }
until_ok 300 "the long member to run" running
# SIGTERM stops the scheduler, not the experiment: the job runs on; the same `run` resumes.
kill -TERM $run_pid
set +e
wait $run_pid; code=$?
set -e
[ $code = 143 ] || fail "a stopped run exits $code, want 143: $(cat "$work/long.log")"
grep -q "the experiment's jobs keep running" "$work/long.log" || fail "stop: $(cat "$work/long.log")"
"$sched" status long | grep -q "not running" || fail "status after stop: $("$sched" status long)"
job=$("$sched" status long --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["members"][0]["job"])')
"$elektronn" status "$job" --host "$(host_of 1)" | grep -q "state: *RUNNING" || fail "$job stopped"
"$sched" run "$work/long.lua" --hosts "$(host_of 1)" --poll 0.3 >>"$work/long.log" 2>&1 &
run_pid=$!
other_pids+=($run_pid)
until_ok 100 "the resumed run" grep -q "resuming experiment 'long'" "$work/long.log"
"$sched" cancel long >"$work/cancel.out" 2>&1 || fail "cancel: $(cat "$work/cancel.out")"
set +e
wait $run_pid; code=$?
set -e
[ $code = 4 ] || fail "a cancelled run exits $code, want 4: $(cat "$work/long.log")"
cancelled() { "$elektronn" status "$job" --host "$(host_of 1)" | grep -q "state: *CANCELLED"; }
until_ok 100 "$job to be cancelled" cancelled
until_ok 50 "no ACTIVE reservation" test "$(active_reservations "$(host_of 1)")" = 0
"$sched" forget long >/dev/null || fail "forget"
"$sched" ls | grep -q '^long ' && fail "forget left it listed"

# Bad input.
set +e
err=$("$sched" run "$work/sweep.lua" --name other 2>&1); code=$?
set -e
[ $code = 2 ] && grep -q "no hosts" <<<"$err" || fail "no hosts: $code $err"
echo 'this is not lua' > "$work/broken_job.lua"
echo "members = {{name = 'x', job = 'broken_job.lua'}}" > "$work/broken.lua"
set +e
err=$("$sched" run "$work/broken.lua" --hosts "$hosts" 2>&1); code=$?
set -e
[ $code = 2 ] && grep -q "member 'x': job file .*broken_job.lua" <<<"$err" ||
  fail "broken job file: $code $err"
echo "sched_run_test: ok"
