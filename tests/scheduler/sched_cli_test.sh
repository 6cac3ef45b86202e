#!/usr/bin/env bash
# elektronn-sched against two real daemons on loopback with test-only GPU inventories
# (--fake-gpus: two GPUs each, one of them busy with a foreign process): `check` lists an
# experiment's members and groups, `plan` places the members on the daemons by their capacity
# (one job each), keeps a group that does not fit waiting as a whole, never places on the busy
# GPU, and refuses a member that needs more GPUs than any host has (exit 4, naming it). Bad
# input: a missing hosts list, an unreachable daemon, a broken experiment file.
# Usage: sched_cli_test.sh ELEKTRONN_SCHED ELEKTRONND
set -euo pipefail
sched=$1
elektronnd=$2
work=$(mktemp -d /tmp/elk_sched.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ports=()
for i in 1 2; do
  port=$(free_port)
  mkdir -p "$work/d$i"
  # GPU 1 of each daemon runs a foreign process (pid 1): busy, whatever its memory.
  printf '{"gpus": [{"uuid": "GPU-d%s-0"}, {"uuid": "GPU-d%s-1", "processes": [{"pid": 1}]}]}\n' \
    $i $i >"$work/gpus$i.json"
  "$elektronnd" --listen 127.0.0.1:$port --state-dir "$work/d$i" --token-file "$work/token" \
    --capacity 1 --fake-gpus "$work/gpus$i.json" >"$work/d$i.log" 2>&1 &
  pids+=($!)
  ports+=($port)
done
# Both daemons share one token file: the first creates it, the second reads it.
for _ in $(seq 100); do [ -s "$work/token" ] && break; sleep 0.1; done
[ -s "$work/token" ] || fail "no token file"
export ELEKTRONN_TOKEN=$(cat "$work/token")
hosts=127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}
for port in "${ports[@]}"; do
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
done

echo "-- job" > "$work/job.lua"
cat > "$work/exp.lua" <<'LUA'
experiment = 'cli-test'
defaults = {job = 'job.lua', gpus = 0, cpu_threads = 1}
members = {
  {name = 'solo', set = {n_steps = 5}, priority = 1},
  {name = 'pair1', group = 'pair'},
  {name = 'pair2', group = 'pair'},
}
LUA

out=$("$sched" check "$work/exp.lua") || fail "check failed: $out"
grep -q "experiment 'cli-test': 3 members, 2 start groups" <<<"$out" || fail "check: $out"
grep -qE '^solo +- +1 +0 GPU, 1 threads' <<<"$out" || fail "check row: $out"
"$sched" check --json "$work/exp.lua" | python3 -c '
import json, sys
e = json.load(sys.stdin)
assert [m["name"] for m in e["members"]] == ["solo", "pair1", "pair2"], e
assert e["members"][0]["overrides"] == ["n_steps=5"], e
' || fail "check --json"

# Capacity 1 per daemon: solo (priority 1) takes one daemon, the pair needs two: it waits whole.
out=$("$sched" plan "$work/exp.lua" --hosts "$hosts") || fail "plan failed: $out"
grep -qE '^solo .*127\.0\.0\.1:[0-9]+ .*would start' <<<"$out" || fail "plan solo: $out"
grep -qE '^pair1 .*waits: its group of 2 does not fit now' <<<"$out" || fail "plan pair1: $out"
grep -qE '^pair2 .*waits' <<<"$out" || fail "plan pair2: $out"
json=$("$sched" plan "$work/exp.lua" --hosts "$hosts" --json)
python3 -c '
import json, sys
p = json.loads(sys.argv[1])
assert [x["member"] for x in p["placed"]] == ["solo"], p
assert sorted(x["member"] for x in p["waiting"]) == ["pair1", "pair2"], p
' "$json" || fail "plan --json: $json"

# GPU members: only GPU 0 of each daemon is free, the foreign process's GPU 1 never placed.
cat > "$work/gpu.lua" <<'LUA'
members = {{name = 'g1', job = 'job.lua', gpus = 1}, {name = 'g2', job = 'job.lua', gpus = 1}}
LUA
out=$("$sched" plan "$work/gpu.lua" --hosts "$hosts") || fail "plan GPUs: $out"
grep -qE '^g1 .*GPU-d[12]-0 +would start' <<<"$out" || fail "plan g1: $out"
grep -qE '^g2 .*GPU-d[12]-0 +would start' <<<"$out" || fail "plan g2: $out"
grep -q 'GPU-d1-1 is busy: foreign process 1' <<<"$out" || fail "busy GPU not named: $out"
! grep -qE '^g[12] .*GPU-d[12]-1' <<<"$out" || fail "placed on the busy GPU: $out"

# A member needing more GPUs than any host has: exit 4, named.
cat > "$work/big.lua" <<'LUA'
members = {{name = 'needs-3', job = 'job.lua', gpus = 3}}
LUA
set +e
err=$("$sched" plan "$work/big.lua" --hosts "$hosts" 2>&1 >/dev/null); code=$?
set -e
[ $code -eq 4 ] || fail "3-GPU member: exit $code, want 4: $err"
grep -q "member 'needs-3' needs 3 GPUs" <<<"$err" || fail "3-GPU member message: $err"
grep -q "has 2 GPUs" <<<"$err" || fail "3-GPU member message: $err"

# Bad input.
set +e
err=$("$sched" plan "$work/exp.lua" 2>&1); code=$?
set -e
[ $code -eq 2 ] && grep -q "no hosts: give --hosts" <<<"$err" || fail "no hosts: $code $err"
dead=$(free_port)
set +e
err=$("$sched" plan "$work/exp.lua" --hosts 127.0.0.1:$dead --timeout 2 2>&1); code=$?
set -e
[ $code -eq 6 ] && grep -q "127.0.0.1:$dead" <<<"$err" || fail "unreachable: $code $err"
echo "members = {{name = 'x', job = 'job.lua', gpu = 1}}" > "$work/bad.lua"
set +e
err=$("$sched" check "$work/bad.lua" 2>&1); code=$?
set -e
[ $code -eq 2 ] && grep -q "unknown key 'gpu' (did you mean 'gpus'?)" <<<"$err" || fail "bad file: $code $err"
set +e
err=$("$sched" run "$work/exp.lua" --hosts "$hosts" --poll 0 2>&1); code=$?
set -e
[ $code -eq 2 ] && grep -q -- "--poll" <<<"$err" || fail "usage error: exit $code, want 2: $err"
set +e
err=$("$sched" status ../../etc/x 2>&1); code=$?
set -e
[ $code -eq 2 ] && grep -q "an experiment id is" <<<"$err" || fail "status ../: exit $code: $err"
echo "sched_cli_test: ok"
