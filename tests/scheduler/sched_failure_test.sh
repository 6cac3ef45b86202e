#!/usr/bin/env bash
# elektronn-sched under failures (issue 12, point 7), against real daemons on loopback with fake
# GPU inventories. A test-only hook ($ELEKTRONN_SCHED_TEST_HOOK, run by the scheduler after each
# reservation it takes and each job it creates) stops a daemon or kills the scheduler at the
# worst moment:
#  1. a host stopped (SIGSTOP) mid-reservation: the group's other reservations are released at
#     once, nothing starts while it is stopped; resumed, the group starts and finishes;
#  2. the scheduler killed (SIGKILL) between reserving and creating: restarted, it releases what
#     it held and starts the group once (one job per member);
#  3. the scheduler killed after creating half the group's (paused) jobs: restarted, it re-issues
#     the creation (the daemons return the jobs already made) and starts each member once;
#  4. the same, not restarted in time: the daemons cancel the paused jobs at resume_by and free
#     their GPUs; restarted later, the group starts on a new attempt, and no member ever ran twice;
#  4b. the scheduler killed after resuming every job but before saving that, restarted after the
#     jobs ended: it takes them as started (and ended), and runs nothing again;
#  5. a GPU busy with a foreign process: the member waits and starts when it frees;
#  6. two schedulers on the same hosts: both experiments finish and no GPU ever ran two jobs.
# Every check on jobs and GPUs reads the daemons' records and event logs (sched_report.py).
# Usage: sched_failure_test.sh ELEKTRONN_SCHED ELEKTRONND ELEKTRONN_WORKER ELEKTRONN PYTHONPATH
set -euo pipefail
sched=$1
elektronnd=$2
worker=$3
elektronn=$4
export PYTHONPATH=$5
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/elk_sched_fail.XXXXXX)
source "$here/sched_lib.sh"
export ELEKTRONN_SCHED_STATE=$work/sched ELEKTRONN_CLIENT=$elektronn

capacity=2 start_daemons 4 1
make_tiny_job
all_hosts=${hosts//,/ }
# Fast timings, so that each scenario takes seconds: 2 s per call, 4 s leases.
fast=(--poll 0.3 --start-margin 1 --backoff 0.5 --lease 4 --timeout 2)

# The hook: $1 reserved|created, $2 member, $3 host; its parent is the scheduler.
printf '%s\n' '#!/usr/bin/env bash' \
  "events=$work/hook.events stop_pid_file=$work/stop.pid stopped=$work/stopped" \
  'echo "$1 $2 $3" >> "$events"' \
  'n=$(grep -c "^$1 " "$events")' \
  'case "${HOOK_MODE:-}:$1:$n" in' \
  '  stop-last-host:reserved:1) kill -STOP "$(cat "$stop_pid_file")"; touch "$stopped" ;;' \
  '  kill-sched:reserved:4|kill-after-create:created:2|kill-after-resume:resumed:4)' \
  '    kill -9 "$PPID" ;;' \
  'esac' > "$work/hook.sh"
chmod +x "$work/hook.sh"
export ELEKTRONN_SCHED_TEST_HOOK=$work/hook.sh

# experiment NAME: a group of four one-GPU members (one per daemon), n_steps 20.
experiment() {
  printf '%s\n' "experiment = '$1'" \
    "defaults = {job = 'job.lua', gpus = 1, cpu_threads = 1, group = 'g'}" \
    "members = {{name = 'a'}, {name = 'b'}, {name = 'c'}, {name = 'd'}}" > "$work/$1.lua"
}
# jobs_of ID [HOST...]: the jobs the daemons (default: all) hold for experiment ID, as
# "member state runs" lines; fails if a daemon does not answer.
jobs_of() {
  local id=$1 json
  shift
  json=$("$py" "$here/sched_report.py" jobs ${@:-$all_hosts}) || return 1
  "$py" -c '
import json, sys
for j in json.load(sys.stdin):
    rid = j["request_id"]
    if rid.startswith(sys.argv[1] + "."):
        print(rid.split("/")[1], j["state"], len(j["runs"]))' "$id" <<<"$json" | sort
}
no_active_reservations() {
  local h
  for h in $all_hosts; do [ "$(active_reservations "$h")" = 0 ] || return 1; done
}
# Each member ran exactly once and succeeded; jobs that never ran may exist only as CANCELLED.
each_member_ran_once() {
  local id=$1 out
  out=$(jobs_of "$id") || fail "a daemon does not answer"
  "$py" - "$out" <<'PY' || fail "$id: jobs on the daemons:
$out"
import sys
rows = [l.split() for l in sys.argv[1].splitlines()]
ran = {}
for member, state, runs in rows:
    if int(runs) > 0:
        assert member not in ran, f"{member} ran twice"
        assert state == "SUCCEEDED", rows
        ran[member] = state
    else:
        assert state == "CANCELLED", rows
assert sorted(ran) == ["a", "b", "c", "d"], rows
PY
}
run_sched() {  # run_sched ID LOG [VAR=value...]: `run` in the foreground
  local id=$1 log=$2
  shift 2
  env "$@" "$sched" run "$work/$id.lua" --hosts "$hosts" "${fast[@]}" >>"$work/$log" 2>&1
}

echo "-- 1. a host stopped mid-reservation"
experiment stop
last=$(printf '%s\n' $all_hosts | sort | tail -1)
for i in 1 2 3 4; do
  if [ "$(host_of $i)" = "$last" ]; then echo "${daemon_pids[$i]}" > "$work/stop.pid"; fi
done
: > "$work/hook.events"
HOOK_MODE=stop-last-host "$sched" run "$work/stop.lua" --hosts "$hosts" "${fast[@]}" \
  >"$work/stop.log" 2>&1 &
run_pid=$!
other_pids+=($run_pid)
until_ok 300 "the hook to stop $last" test -f "$work/stopped"
# The Reserve on the stopped host times out (2 s); the others are released at once, well
# within their 4 s lease.
until_ok 100 "the failed start" grep -q "not started" "$work/stop.log"
for h in $all_hosts; do
  [ "$h" = "$last" ] && continue
  [ "$(active_reservations "$h")" = 0 ] || fail "reservation left on $h after the failed start"
done
sleep 3  # while the host is stopped, nothing starts
live=$(printf '%s\n' $all_hosts | grep -vxF "$last")
out=$(jobs_of stop $live) || fail "the live daemons do not answer"
[ -z "$out" ] || fail "jobs started without the stopped host: $out"
kill -CONT "$(cat "$work/stop.pid")"
wait $run_pid || fail "run after the host came back: $(cat "$work/stop.log")"
grep -q "ended: 4 succeeded" "$work/stop.log" || fail "stop: $(cat "$work/stop.log")"
each_member_ran_once stop
until_ok 100 "no reservation left" no_active_reservations

echo "-- 2. the scheduler killed between reserving and creating"
experiment killres
: > "$work/hook.events"
set +e
run_sched killres killres.log HOOK_MODE=kill-sched
code=$?
set -e
[ $code = 137 ] || fail "the hook did not kill the scheduler (exit $code): $(cat "$work/killres.log")"
out=$(jobs_of killres) || fail "a daemon does not answer"
[ -z "$out" ] || fail "jobs before commit: $out"
"$sched" status killres | grep -q ' reserving ' || fail "state: $("$sched" status killres)"
run_sched killres killres.log || fail "restarted run: $(cat "$work/killres.log")"
grep -q "ended: 4 succeeded" "$work/killres.log" || fail "killres: $(cat "$work/killres.log")"
each_member_ran_once killres
[ "$(jobs_of killres | wc -l)" = 4 ] || fail "duplicate jobs: $(jobs_of killres)"
until_ok 100 "no reservation left" no_active_reservations

echo "-- 3. the scheduler killed after creating half the jobs, restarted at once"
experiment killcreate
: > "$work/hook.events"
set +e
run_sched killcreate killcreate.log HOOK_MODE=kill-after-create
code=$?
set -e
[ $code = 137 ] || fail "not killed (exit $code): $(cat "$work/killcreate.log")"
[ "$(jobs_of killcreate | wc -l)" = 2 ] || fail "want 2 paused jobs: $(jobs_of killcreate)"
run_sched killcreate killcreate.log || fail "restarted run: $(cat "$work/killcreate.log")"
grep -q "finishing the start a stopped scheduler began" "$work/killcreate.log" ||
  fail "no recovery: $(cat "$work/killcreate.log")"
[ "$(jobs_of killcreate | wc -l)" = 4 ] || fail "duplicate jobs: $(jobs_of killcreate)"
each_member_ran_once killcreate

echo "-- 4. the same, restarted after resume_by"
experiment late
: > "$work/hook.events"
set +e
run_sched late late.log HOOK_MODE=kill-after-create
code=$?
set -e
[ $code = 137 ] || fail "not killed (exit $code): $(cat "$work/late.log")"
# resume_by = the common start (1 s) + the lease (4 s): then the daemons cancel and release.
all_cancelled() { [ "$(jobs_of late | grep -c ' CANCELLED 0$')" = 2 ]; }
until_ok 150 "the daemons to cancel the unresumed jobs" all_cancelled
until_ok 50 "their reservations released" no_active_reservations
run_sched late late.log || fail "restarted run: $(cat "$work/late.log")"
each_member_ran_once late

echo "-- 4b. the scheduler killed after resuming the jobs, restarted after they ended"
experiment resumed
: > "$work/hook.events"
set +e
run_sched resumed resumed.log HOOK_MODE=kill-after-resume
code=$?
set -e
[ $code = 137 ] || fail "not killed (exit $code): $(cat "$work/resumed.log")"
all_ended() { [ "$(jobs_of resumed | grep -c ' SUCCEEDED 1$')" = 4 ]; }
until_ok 300 "the resumed jobs to finish" all_ended
run_sched resumed resumed.log || fail "restarted run: $(cat "$work/resumed.log")"
grep -q "ended: 4 succeeded" "$work/resumed.log" || fail "resumed: $(cat "$work/resumed.log")"
[ "$(jobs_of resumed | wc -l)" = 4 ] || fail "ran again: $(jobs_of resumed)"
each_member_ran_once resumed

echo "-- 5. a GPU busy with a foreign process"
fake_gpus 1 1 0
printf '%s\n' "members = {{name = 'a', job = 'job.lua', gpus = 1, hosts = {'$(host_of 1)'}}}" \
  > "$work/foreign.lua"
"$sched" run "$work/foreign.lua" --name foreign --hosts "$hosts" "${fast[@]}" \
  >"$work/foreign.log" 2>&1 &
run_pid=$!
other_pids+=($run_pid)
until_ok 100 "the member to wait" grep -q "a: waits: does not fit now" "$work/foreign.log"
sleep 2
"$sched" status foreign | grep -qE '^a +- +waiting ' || fail "foreign: $("$sched" status foreign)"
out=$(jobs_of foreign) || fail "a daemon does not answer"
[ -z "$out" ] || fail "started on a busy GPU: $out"
fake_gpus 1 1  # the foreign process ends
wait $run_pid || fail "run after the GPU freed: $(cat "$work/foreign.log")"
[ "$(jobs_of foreign)" = "a SUCCEEDED 1" ] || fail "foreign: $(jobs_of foreign)"

echo "-- 6. two schedulers on the same hosts"
for id in left right; do
  printf '%s\n' "experiment = '$id'" \
    "defaults = {job = 'job.lua', gpus = 1, cpu_threads = 1}" \
    "members = {{name = 'p1', group = 'p'}, {name = 'p2', group = 'p'}, {name = 'p3', group = 'p'}," \
    "           {name = 's1'}, {name = 's2'}, {name = 's3'}}" > "$work/$id.lua"
done
unset ELEKTRONN_SCHED_TEST_HOOK
fast=(--poll 0.1 --start-margin 1 --backoff 0.5 --lease 4 --timeout 2)
"$sched" run "$work/left.lua" --hosts "$hosts" "${fast[@]}" >"$work/left.log" 2>&1 &
left=$!
other_pids+=($left)
"$sched" run "$work/right.lua" --hosts "$hosts" "${fast[@]}" >"$work/right.log" 2>&1 ||
  fail "right: $(cat "$work/right.log")"
wait $left || fail "left: $(cat "$work/left.log")"
"$py" "$here/sched_report.py" overlap $all_hosts >"$work/overlap.txt" ||
  fail "two jobs on one GPU: $(cat "$work/overlap.txt")"
until_ok 100 "no reservation left" no_active_reservations
echo "sched_failure_test: ok"
