#!/usr/bin/env bash
# Each binary links only its layer (README, "Architecture"): the thin client `elektronn` needs no
# oneDNN, OpenMP, HDF5, cairo, libpng or gRPC *server* code; the daemon validates JobSpecs
# without oneDNN, OpenMP, HDF5, cairo or libpng (training runs in elektronn-worker).
# Reads the binaries' dynamic dependencies (readelf: DT_NEEDED) and, since Debian ships gRPC's
# client and server in one libgrpc++, the gRPC server symbols the client imports.
# Also: no file in client/ includes a header of the engine's trainer, nodes, graph or kernels.
# elektronn-sched talks to daemons over gRPC only: no engine library, no gRPC server code, and
# no file in scheduler/ includes an engine header but the Lua sandbox's and the status macros.
# Usage: link_deps_test.sh CLIENT_BINARY DAEMON_BINARY SOURCE_DIR SCHED_BINARY
set -euo pipefail
client=$1
daemon=$2
src=$3
sched=$4
status=0

# engine/report/model_graph.h is the one exception: it takes a ModelSpec and exposes no Graph
# (elk_model_graph: elk_graph plus Graphviz's libgvc, whose cairo plugin is dlopen'ed, not linked).
if hits=$(grep -n -E '#include "(engine/(trainer|nodes|graph|optim|data|io|report|shell)|kernels)/' \
          "$src"/client/*.cc "$src"/client/*.h | grep -v '#include "engine/report/model_graph\.h"'); then
  echo "FAIL: the client includes engine internals (use engine/lua, engine/config or a proto):" >&2
  echo "$hits" >&2
  status=1
fi

if hits=$(grep -n -E '#include "(engine|kernels|worker|server)/' "$src"/scheduler/*.cc \
          "$src"/scheduler/*.h |
          grep -v -E '#include "engine/(lua/internal/lua_state|core/status)\.h"'); then
  echo "FAIL: the scheduler includes engine, worker or server code:" >&2
  echo "$hits" >&2
  status=1
fi

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

forbid() {  # forbid BINARY WHAT REGEX
  local hits
  if hits=$(needed "$1" | grep -E "$3"); then
    echo "FAIL: $(basename "$1") links $2: $(echo $hits)" >&2
    status=1
  fi
}

command -v readelf >/dev/null || { echo "FAIL: readelf (binutils) is missing" >&2; exit 1; }
command -v nm >/dev/null || { echo "FAIL: nm (binutils) is missing" >&2; exit 1; }
for b in "$client" "$daemon" "$sched"; do
  [ -x "$b" ] || { echo "FAIL: no binary at $b" >&2; exit 1; }
done

heavy='^lib(dnnl|gomp|omp|hdf5|cairo|png|sz)[._-]'
forbid "$client" "engine libraries (oneDNN, OpenMP, HDF5, cairo, libpng)" "$heavy"
forbid "$daemon" "engine libraries (oneDNN, OpenMP, HDF5, cairo, libpng)" "$heavy"
forbid "$sched" "engine libraries (oneDNN, OpenMP, HDF5, cairo, libpng)" "$heavy|^lib(gvc|cgraph)[._-]"

# The client and the scheduler may use libgrpc++ (channels, stubs) but no server-side class.
for b in "$client" "$sched"; do
  if server_syms=$(nm -D --undefined-only -C "$b" | grep -E 'grpc::(Server|ServerBuilder|ServerContext|Service)\b'); then
    echo "FAIL: $(basename "$b") imports gRPC server code:" >&2
    echo "$server_syms" | head -5 >&2
    status=1
  fi
done
# And the daemon must really be the server (guards against the test reading the wrong files).
daemon_syms=$(nm -D --undefined-only -C "$daemon")
grep -qE 'grpc::ServerBuilder' <<<"$daemon_syms" ||
  { echo "FAIL: $(basename "$daemon") imports no grpc::ServerBuilder: wrong binary?" >&2; status=1; }

if [ $status -eq 0 ]; then
  echo "client needs: $(needed "$client" | grep -v '^libabsl' | tr '\n' ' ')"
  echo "daemon needs: $(needed "$daemon" | grep -v '^libabsl' | tr '\n' ' ')"
  echo "scheduler needs: $(needed "$sched" | grep -v '^libabsl' | tr '\n' ' ')"
fi
exit $status
