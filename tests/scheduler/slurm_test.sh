#!/usr/bin/env bash
# `elektronn-sched run --slurm --wait` against a real Slurm 22.05 (Debian's slurm-wlm) started
# here: slurmctld and two slurmd on this one machine (nodes n1 and n2: Slurm 22.05 plans each
# component of a heterogeneous job on nodes of its own, so a group of two needs two nodes), with
# auth/none (no munge) and everything in a temp dir. An experiment of one group of two tiny
# training members must run as ONE heterogeneous job (one id, two components, one start time),
# both workers training at the same time, each into its own training directory with a final
# model and its own override; a group whose member fails must be reported failed (exit 1).
# A missing Slurm is a failure, not a skip: bootstrap.sh installs slurm-wlm.
# Usage: slurm_test.sh ELEKTRONN_SCHED ELEKTRONN ELEKTRONN_WORKER
set -euo pipefail
sched=$(realpath "$1")
export ELEKTRONN_CLIENT=$(realpath "$2") ELEKTRONN_WORKER=$(realpath "$3")
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in slurmctld slurmd sbatch srun scontrol sinfo scancel; do
  command -v $tool >/dev/null || PATH=$PATH:/usr/sbin command -v $tool >/dev/null ||
    fail "$tool is missing: install slurm-wlm (deploy/bootstrap.sh does)"
done
export PATH=$PATH:/usr/sbin
start=$SECONDS
work=$(mktemp -d /tmp/elk_slurm.XXXXXX)
pids=()
cleanup() {
  [ -n "${trio:-}" ] && kill "$trio" 2>/dev/null || true
  # Our cluster's jobs only (SLURM_CONF names it), so that no slurmstepd outlives the test.
  if [ -n "${SLURM_CONF:-}" ] && [ -n "$(squeue -h 2>/dev/null)" ]; then
    scancel --quiet -u "$(id -un)" 2>/dev/null || true
    sleep 1
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/slurm/state" "$work/slurm/log"
user=$(id -un)
host=$(hostname -s)
cat > "$work/slurm/slurm.conf" <<EOF
ClusterName=elktest$$
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Heterogeneous jobs start only from the backfill scheduler: every second, not every 30.
SchedulerParameters=bf_interval=1
StateSaveLocation=$work/slurm/state
SlurmctldPidFile=$work/slurm/slurmctld.pid
SlurmctldLogFile=$work/slurm/log/slurmctld.log
SlurmdPidFile=$work/slurm/slurmd-%n.pid
SlurmdLogFile=$work/slurm/log/slurmd-%n.log
SlurmdSpoolDir=$work/slurm/spool-%n
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$(free_port) CPUs=1 RealMemory=1000
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$(free_port) CPUs=1 RealMemory=1000
PartitionName=elk Nodes=n1,n2 Default=YES MaxTime=10 State=UP
EOF
export SLURM_CONF=$work/slurm/slurm.conf
slurmctld -D -f "$SLURM_CONF" >"$work/slurm/log/slurmctld.stderr" 2>&1 &
pids+=($!)
for n in n1 n2; do
  slurmd -D -f "$SLURM_CONF" -N $n >"$work/slurm/log/slurmd-$n.stderr" 2>&1 &
  pids+=($!)
done
for _ in $(seq 150); do
  [ "$(sinfo -h -o '%t %D' 2>/dev/null)" = "idle 2" ] && break
  sleep 0.2
done
[ "$(sinfo -h -o '%t %D' 2>/dev/null)" = "idle 2" ] ||
  fail "Slurm did not come up: $(sinfo 2>&1; tail -5 "$work"/slurm/log/*)"
echo "slurm up after $((SECONDS - start)) s"

# A tiny job on demo data (tests/support/tiny_job.h's net); the members differ in lr.
cd "$work"
"$ELEKTRONN_WORKER" make-demo-data data >/dev/null
job() {  # job N_STEPS DATA_FILE
  cat <<LUA
save_path = 'ignored'
data_class = 'BatchCreatorImage'
data_init_kwargs = {d_path = 'data/', l_path = 'data/', d_files = {{'$2', 'raw'}},
                    l_files = {{'barrier_0.h5', 'lab'}}}
n_steps = $1
max_runtime = 300
history_freq = 50
monitor_batch_size = 1
optimiser = 'SGD'
optimiser_params = {lr = 1e-3, mom = 0.9}
batch_size = 1
function create_model()
  local inp = nm.Input{{None, 1, 3, 17, 17}, 'b,f,z,x,y', name = 'raw'}
  local out = nm.Conv{inp, 4, {1, 3, 3}}
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  return nm.designate_nodes{input_node = inp, target_node = target, loss_node = loss,
                            prediction_node = probs}
end
LUA
}
job 800 raw_0.h5 > job.lua
cat > exp.lua <<'LUA'
experiment = 'slurm-test'
defaults = {job = 'job.lua', gpus = 0, cpu_threads = 1, memory = '300M'}
members = {
  {name = 'lr1e-3', group = 'pair', set = {lr = 1e-3}},
  {name = 'lr3e-4', group = 'pair', set = {lr = 3e-4}},
}
LUA

# The Slurm options belong to --slurm, which takes no daemons.
set +e
err=$("$sched" run exp.lua --slurm-dir x 2>&1) && fail "--slurm-dir without --slurm ran"
grep -q -- "--slurm-dir requires --slurm" <<<"$err" || fail "--slurm-dir without --slurm: $err"
err=$("$sched" run exp.lua --slurm --hosts 127.0.0.1:1 2>&1) && fail "--slurm with --hosts ran"
grep -q -- "--hosts excludes --slurm" <<<"$err" || fail "--slurm with --hosts: $err"
set -e

t0=$SECONDS
out=$(timeout 120 "$sched" run exp.lua --slurm --wait 2>&1) || fail "slurm --wait failed: $out"
echo "$out"
echo "experiment ran in $((SECONDS - t0)) s"
dir=$work/slurm-test-slurm
grep -qE '^group pair: slurm job [0-9]+ \(members lr1e-3, lr3e-4\)$' <<<"$out" || fail "submit line: $out"
grep -qE '^group pair: slurm job [0-9]+ succeeded .*lr1e-3: exit 0, lr3e-4: exit 0\)$' <<<"$out" ||
  fail "outcome line: $out"
id=$(sed -nE 's/^group pair: slurm job ([0-9]+) \(members.*/\1/p' <<<"$out")

# One heterogeneous job: its id shows two components (ids id and id+1), on the two nodes, with
# one start time.
components=$(scontrol show job -o "$id")
[ "$(wc -l <<<"$components")" = 2 ] || fail "job $id is not a 2-component hetjob: $components"
starts=$(grep -oE ' StartTime=[^ ]+' <<<"$components" | sort -u)
[ "$(wc -l <<<"$starts")" = 1 ] || fail "components started apart: $starts"
grep -q "JobId=$id " <<<"$components" && grep -q "JobId=$((id + 1)) " <<<"$components" ||
  fail "component ids: $components"
[ "$(grep -oE ' NodeList=n[12]' <<<"$components" | sort -u | wc -l)" = 2 ] ||
  fail "components not on n1 and n2: $components"
grep -q '^#SBATCH hetjob$' "$dir/groups/pair.sbatch" || fail "no hetjob separator in the script"

# Each member trained fully into its own directory, with its own lr, while the other trained.
for m in lr1e-3 lr3e-4; do
  [ "$(head -c 4 "$dir/$m/$m-FINAL.h5" | od -An -c | tr -d ' ')" = '211HDF' ] ||
    fail "$m: no final model (HDF5) in $dir/$m: $(ls "$dir/$m" 2>&1)"
  grep -q "End of training at step 800 (n_steps reached)" "$dir/$m/0-$m.log" ||
    fail "$m did not train to the end: $(tail -3 "$dir/$m/0-$m.log")"
done
grep -q 'LR=1.00e-03' "$dir/lr1e-3/0-lr1e-3.log" || fail "lr1e-3's override"
grep -q 'LR=3.00e-04' "$dir/lr3e-4/0-lr3e-4.log" || fail "lr3e-4's override"
python3 - "$dir" <<'PY' || fail "the members did not train at the same time"
import datetime, re, sys
span = {}
for m in ("lr1e-3", "lr3e-4"):
    stamps = [datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
              for s in re.findall(r"^\[([0-9-]+ [0-9:]+)\]", open(f"{sys.argv[1]}/{m}/0-{m}.log").read(), re.M)]
    span[m] = (stamps[0], stamps[-1])
(a0, a1), (b0, b1) = span.values()
print("trained", {m: f"{s[0]:%T}-{s[1]:%T}" for m, s in span.items()})
assert a0 < b1 and b0 < a1, span
assert abs((a0 - b0).total_seconds()) <= 1, span
PY

# A group with a member whose data is missing: the group fails, the other member is named ok.
job 20 no_such_raw.h5 > bad.lua
cat > bad_exp.lua <<'LUA'
experiment = 'slurm-bad'
defaults = {gpus = 0, cpu_threads = 1, memory = '300M', group = 'g'}
members = {{name = 'good', job = 'job.lua', set = {n_steps = 20}}, {name = 'bad', job = 'bad.lua'}}
LUA
set +e
out=$(timeout 120 "$sched" run bad_exp.lua --slurm --wait --slurm-dir "$work/bad dir" 2>&1); code=$?
set -e
echo "$out"
[ $code -eq 1 ] || fail "a failed group: exit $code, want 1: $out"
grep -qE '^group g: slurm job [0-9]+ failed .*good: exit 0, bad: exit [1-9]' <<<"$out" ||
  fail "failed group's line: $out"
grep -q "no_such_raw.h5" "$work/bad dir/bad.out" || fail "bad's output: $(cat "$work/bad dir/bad.out")"
# A second run into the same directory refuses to overwrite the members' training directories.
set +e
out=$("$sched" run bad_exp.lua --slurm --slurm-dir "$work/bad dir" 2>&1); code=$?
set -e
[ $code -eq 4 ] && grep -q "member 'good': its training directory .* exists" <<<"$out" ||
  fail "rerun into the same directory: $code $out"

# Three members on two nodes: the group waits whole (Slurm says why), and a job cancelled in
# Slurm is reported failed.
cat > trio.lua <<'LUA'
experiment = 'slurm-trio'
defaults = {job = 'job.lua', gpus = 0, cpu_threads = 1, memory = '100M', group = 't'}
members = {{name = 'x'}, {name = 'y'}, {name = 'z'}}
LUA
"$sched" run trio.lua --slurm --wait >trio.out 2>&1 &
trio=$!
for _ in $(seq 100); do grep -q 'pending (Resources)' trio.out && break; sleep 0.2; done
grep -qE '^group t: slurm job [0-9]+ pending \(Resources\)$' trio.out ||
  fail "no pending line: $(cat trio.out)"
[ -z "$(ls slurm-trio-slurm/*.exit 2>/dev/null)" ] || fail "a member of the waiting group started"
scancel "$(sed -nE 's/^group t: slurm job ([0-9]+) \(members.*/\1/p' trio.out)"
set +e
wait $trio; code=$?
set -e
[ $code -eq 1 ] && grep -qE '^group t: slurm job [0-9]+ failed \(CANCELLED' trio.out ||
  fail "cancelled group: $code $(cat trio.out)"
cat trio.out
echo "slurm_test: ok in $((SECONDS - start)) s"
