# Shared by the elektronn-sched tests that run jobs: daemons on loopback with test-only GPU
# inventories (--fake-gpus), a tiny training job, bounded waits. Source it after setting
# `work` (a temp dir), `elektronnd`, `worker` and `elektronn`; it sets a cleanup trap.
py=${ELK_PYTHON:-/usr/bin/python3}  # Debian's: python3-grpcio, -protobuf
daemon_pids=()
ports=()
other_pids=()
cleanup() {
  for p in "${other_pids[@]}" "${daemon_pids[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  if [ "${KEEP_WORK:-}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
until_ok() {  # tries(0.1 s each) what command...
  local tries=$1 what=$2
  shift 2
  for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

# fake_gpus I N [FOREIGN_GPU]: daemon I's inventory of N GPUs "GPU-dI-k"; GPU FOREIGN_GPU (if
# given) runs a foreign process (pid 1). Written atomically: the daemon re-reads it every call.
fake_gpus() {
  local i=$1 n=$2 busy=${3:-} k entries=()
  for k in $(seq 0 $((n - 1))); do
    if [ "$k" = "$busy" ]; then
      entries+=("{\"uuid\": \"GPU-d$i-$k\", \"processes\": [{\"pid\": 1}]}")
    else
      entries+=("{\"uuid\": \"GPU-d$i-$k\"}")
    fi
  done
  local IFS=,
  echo "{\"gpus\": [${entries[*]}]}" > "$work/gpus$i.json.tmp"
  mv "$work/gpus$i.json.tmp" "$work/gpus$i.json"
}

# start_daemon I: daemon I on a free port (its inventory must exist), capacity $capacity.
start_daemon() {
  local i=$1 port=${ports[$1]:-$(free_port)}
  ports[$i]=$port
  mkdir -p "$work/d$i"
  "$elektronnd" --listen 127.0.0.1:$port --state-dir "$work/d$i" --data-dir "$work" \
    --token-file "$work/token" --capacity "${capacity:-2}" --fake-gpus "$work/gpus$i.json" \
    --worker-binary "$worker" --worker-threads 1 --worker-status-interval 0 \
    >>"$work/d$i.log" 2>&1 &
  daemon_pids[$i]=$!
  until_ok 100 "daemon $i's token" test -s "$work/token"
  until_ok 100 "daemon $i to listen" \
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)"
}

# start_daemons N GPUS: daemons 1..N with GPUS free fake GPUs each; sets ELEKTRONN_TOKEN, hosts.
start_daemons() {
  local i
  for i in $(seq "$1"); do fake_gpus "$i" "$2"; start_daemon "$i"; done
  export ELEKTRONN_TOKEN=$(cat "$work/token")
  hosts=$(for i in $(seq "$1"); do printf '127.0.0.1:%s,' "${ports[$i]}"; done)
  hosts=${hosts%,}
}
host_of() { echo "127.0.0.1:${ports[$1]}"; }

# The training set and a tiny job (a few hundred ms of training at n_steps = 20).
make_tiny_job() {
  "$elektronn" make-demo-data "$work/data" >/dev/null
  cat > "$work/job.lua" <<'LUA'
save_path = 'x'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data/', l_path = 'data/', d_files = {{'raw_0.h5', 'raw'}},
                    l_files = {{'barrier_0.h5', 'lab'}}}
n_steps = 20
max_runtime = 3600
history_freq = 100000
monitor_batch_size = 1
optimiser = 'Adam'
optimiser_params = {lr = 1e-3}
batch_size = 1
function create_model()
  local inp = nm.Input{{None, 1, 5, 27, 27}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 4, {1, 4, 4}, {1, 2, 2}}
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true}}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
LUA
}

# active_reservations HOST: how many ACTIVE reservations the daemon holds.
active_reservations() {
  "$elektronn" hosts "$1" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(1 for h in d["hosts"] for r in h["resources"].get("reservations", [])
          if r.get("state") == "ACTIVE"))'
}
