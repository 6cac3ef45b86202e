#!/usr/bin/env bash
# Drives the real `elektronn shell` in a pseudo-terminal (tmux) against a daemon on loopback:
# attach (training pauses: the step stays still), paramstats, Tab after `set` and `model.`,
# setlr then q (the next status lines show the new rate), a Lua assignment to a parameter
# (read back through the Model service with `elektronn params`-style export), the sandbox
# refusing io.open, and kill ending the job with a checkpoint of the step it was paused at.
# Usage: shell_pty_test.sh ELEKTRONN ELEKTRONND ELEKTRONN_WORKER
set -euo pipefail
elektronn=$1
elektronnd=$2
worker=$3
work=$(mktemp -d /tmp/elk_pty.XXXXXX)
session=elkpty$$
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [ -n "${dpid:-}" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- pane:" >&2; tmux capture-pane -t "$session" -p -S -200 >&2 || true; exit 1; }

"$elektronn" make-demo-data "$work/data" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$elektronnd" --listen 127.0.0.1:$port --state-dir "$work/state" --data-dir "$work" \
  --worker-binary "$worker" --worker-threads 1 --worker-status-interval 0.1 \
  >"$work/daemon.log" 2>&1 &
dpid=$!
# Every wait below is bounded and fails with what it waited for.
until_ok() {  # tries seconds what command...
  local tries=$1 what=$2
  shift 2
  for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}
until_ok 100 "the daemon's token" test -s "$work/state/token"
export ELEKTRONN_HOST=127.0.0.1:$port ELEKTRONN_TOKEN=$(cat "$work/state/token")
cat > "$work/job.lua" <<'LUA'
save_path = 'x'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data/', l_path = 'data/', d_files = {{'raw_0.h5', 'raw'}},
                    l_files = {{'barrier_0.h5', 'lab'}}}
n_steps = 10000000
max_runtime = 3600
history_freq = 100000
monitor_batch_size = 1
optimiser = 'Adam'
optimiser_params = {lr = 1e-3}
batch_size = 1
function create_model()
  local inp = nm.Input{{None, 1, 5, 27, 27}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 6, {1, 4, 4}, {1, 2, 2}}
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true}}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
LUA
job=$("$elektronn" submit "$work/job.lua")
state_is() { "$elektronn" status "$job" | grep -q "state: *\($1\)"; }
until_ok 300 "job $job to run" state_is RUNNING
sleep 1
step_of_job() {
  "$elektronn" status "$job" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("step", 0))'
}
checkpoint_step() {  # the step stored in the job's -LAST checkpoint (0 if there is none)
  /usr/bin/python3 - "$work"/state/jobs/*/train/train-LAST.h5 <<'PY'
import os, sys, h5py
p = sys.argv[1]
print(int(h5py.File(p, "r")["optimiser"].attrs["step"]) if os.path.exists(p) else 0)
PY
}

tmux new-session -d -s "$session" -x 160 -y 50 \
  "ELEKTRONN_HOST=$ELEKTRONN_HOST ELEKTRONN_TOKEN=$ELEKTRONN_TOKEN $elektronn shell $job; sleep 30"
wait_for() {  # pattern
  for _ in $(seq 100); do
    tmux capture-pane -t "$session" -p -S -200 | grep -q -- "$1" && return 0
    sleep 0.1
  done
  fail "timed out waiting for: $1"
}
wait_for "(paused)>>"
step1=$(step_of_job)
sleep 1.5
step2=$(step_of_job)
[ "$step1" = "$step2" ] || fail "training did not pause: step $step1 -> $step2"

tmux send-keys -t "$session" "paramstats" Enter
wait_for "conv/w .*mean="
tmux send-keys -t "$session" "set" Tab
wait_for "setmom"
tmux send-keys -t "$session" C-u "model." Tab
wait_for "conv1"
tmux send-keys -t "$session" C-u "io.open('/etc/passwd')" Enter
wait_for "sandbox"
tmux send-keys -t "$session" "model.conv.b[1] = 0.25" Enter
tmux send-keys -t "$session" "model.conv.b[1]" Enter
wait_for "= 0.25"
tmux send-keys -t "$session" "setlr 1e-8" Enter
wait_for "lr = 1e-08"
tmux send-keys -t "$session" "q" Enter
# The next status lines show the new rate.
sleep 1
timeout 5 "$elektronn" watch "$job" --json >"$work/events.jsonl" 2>"$work/watch.err" || true
python3 - "$work/events.jsonl" <<'PY' || fail "no status line with lr 1e-08 after q ($(wc -l <"$work/events.jsonl") events; $(head -c 300 "$work/watch.err"))"
import json, sys
lrs = [json.loads(l).get("status", {}).get("learning_rate") for l in open(sys.argv[1])]
lrs = [float(x) for x in lrs if x is not None]
sys.exit(0 if lrs and abs(lrs[-1] - 1e-8) < 1e-12 else 1)
PY

# The parameter written in the shell, read back through the Model service (export).
timeout 60 "$elektronn" export "$job" -o "$work/export.h5" >/dev/null || fail "export failed"
/usr/bin/python3 - "$work/export.h5" <<'PY' || fail "conv/b[0] was not 0.25 in the exported model"
import sys, h5py
b = h5py.File(sys.argv[1], "r")["params/conv/b"][()]
# Training went on after q: this tiny net runs 1000+ steps a second, so lr is set to 1e-8 (an Adam
# step moves a parameter by a few lr at most; with 1e-5, 10000 steps under load drifted b by 0.1).
# The initial value was 1/16.
sys.exit(0 if abs(b[0] - 0.25) < 1e-3 else 1)
PY

# kill ends the job with a checkpoint of the step it was paused at, newer than the attach (the
# only earlier checkpoint is the one of step 1: history_freq is 100000).
tmux new-session -d -s "${session}b" \
  "ELEKTRONN_HOST=$ELEKTRONN_HOST ELEKTRONN_TOKEN=$ELEKTRONN_TOKEN $elektronn shell $job; sleep 30"
session="${session}b"
wait_for "(paused)>>"
touch "$work/attached"
attach_step=$(step_of_job)
before=$(checkpoint_step)
[ "$before" -lt "$attach_step" ] || fail "checkpoint of step $before already at attach (step $attach_step)"
tmux send-keys -t "$session" "kill" Enter
until_ok 300 "job $job to stop after kill" state_is "SUCCEEDED\|CANCELLED\|PAUSED"
ckpt=$(ls "$work"/state/jobs/*/train/train-LAST.h5) || fail "no checkpoint after kill"
[ "$ckpt" -nt "$work/attached" ] || fail "the checkpoint is not newer than the attach"
saved=$(checkpoint_step)
[ "$saved" -ge "$attach_step" ] || fail "checkpoint of step $saved, but the job was at step $attach_step at attach"
echo "shell pty test passed (checkpoint of step $saved; step $attach_step at attach)"
