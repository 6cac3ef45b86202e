#!/usr/bin/env bash
# The Debian package as an administrator meets it: builds it with cpack from the build tree,
# checks its control data (dependencies from dpkg-shlibdeps, maintainer scripts) and contents,
# runs postinst against stubs (the user and directories it would create), unpacks it into a
# scratch root, runs `systemd-analyze verify` on the installed unit there, and starts the
# installed daemon once: `elektronn hosts`, the Python client and bash completion against it,
# then SIGTERM. Needs no root. A missing tool fails the test (deploy/bootstrap.sh installs them).
# Usage: package_test.sh BUILD_DIR [CPACK]
set -euo pipefail
build=$(cd "$1" && pwd)
cpack=${2:-cpack}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
for tool in "$cpack" dpkg-deb dpkg-shlibdeps systemd-analyze python3 readelf timeout; do
  command -v "$tool" >/dev/null || fail "'$tool' is not installed (run deploy/bootstrap.sh)"
done

tmp=$(mktemp -d)
daemon_pid=""
cleanup() {
  [[ -n $daemon_pid ]] && kill -KILL "$daemon_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------------------------------
"$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
debs=("$tmp"/out/elektronn_*.deb)
[[ -f ${debs[0]} ]] || fail "cpack wrote no elektronn_*.deb: $(ls "$tmp/out")"
deb=${debs[0]}
echo "package: $(basename "$deb"), $(du -k "$deb" | cut -f1) KiB"

# --- control data --------------------------------------------------------------------------------
info=$(dpkg-deb -I "$deb")
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == elektronn ]] || fail "Package: '$(field Package)', want elektronn"
[[ $(field Architecture) == amd64 ]] || fail "Architecture: '$(field Architecture)', want amd64"
depends=$(field Depends)
echo "Depends: $depends"
# From dpkg-shlibdeps (the binaries' libraries), plus the maintainer scripts' adduser.
for lib in 'libgrpc\+\+' 'libprotobuf' 'libdnnl' 'libhdf5' 'libcairo' 'libc6' 'adduser'; do
  grep -qE "(^|, )$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done
# The model graph picture (issue 11): Graphviz's libgvc6, which also ships the render plugins.
grep -qE "(^|, )libgvc6" <<<"$depends" || fail "Depends lacks libgvc6: $depends"
for script in postinst prerm postrm; do
  grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\* +$script " <<<"$info" ||
    fail "the package has no executable $script:"$'\n'"$info"
done

# --- contents ------------------------------------------------------------------------------------
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in ./usr/bin/elektronn ./usr/bin/elektronnd ./usr/bin/elektronn-worker \
  ./usr/bin/elektronn-sched ./usr/share/man/man1/elektronn-sched.1.gz \
  ./usr/lib/systemd/system/elektronnd.service \
  ./usr/share/bash-completion/completions/elektronn \
  ./usr/share/man/man1/elektronn.1.gz ./usr/share/man/man1/elektronnd.1.gz \
  ./usr/share/man/man1/elektronn-worker.1.gz \
  ./usr/share/elektronn/tls/make-certs.sh ./usr/share/elektronn/tls/README.md \
  ./usr/share/doc/elektronn/examples/neuro3d_lite.lua ./usr/share/doc/elektronn/README.md \
  ./usr/lib/python3/dist-packages/elektronn_client/__init__.py \
  ./usr/lib/python3/dist-packages/elektronn_client/_gen/elektronn/v1/jobs_pb2_grpc.py; do
  grep -qxF "$path" <<<"$contents" || fail "the package lacks $path"
done
if stray=$(grep -vE '^\./($|usr/($|bin/|lib/($|systemd/|python3/)|share/))' <<<"$contents"); then
  fail "files outside /usr/{bin,lib/systemd,lib/python3,share}: $stray"
fi
if stray=$(grep -E '\.(a|o|h|pyc)$|__pycache__|_test$' <<<"$contents"); then
  fail "build leftovers in the package: $stray"
fi

# --- maintainer scripts, against stubs (no root needed) ------------------------------------------
dpkg-deb -e "$deb" "$tmp/control"
stubs=$tmp/stubs
mkdir -p "$stubs"
for tool in adduser install systemctl; do
  printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$tool" "$tmp/calls" >"$stubs/$tool"
done
printf '#!/bin/sh\nexit 2\n' >"$stubs/getent"  # no such user yet
chmod +x "$stubs"/*
PATH=$stubs:$PATH sh "$tmp/control/postinst" configure "" || fail "postinst configure failed"
calls=$(cat "$tmp/calls")
grep -qE '^adduser .*--system .*--home /var/lib/elektronnd .* elektronn$' <<<"$calls" ||
  fail "postinst does not create the system user elektronn: $calls"
grep -qxF 'install -d -m 0700 -o elektronn -g elektronn /var/lib/elektronnd' <<<"$calls" ||
  fail "postinst does not create /var/lib/elektronnd (0700, elektronn): $calls"
grep -qxF 'install -d -m 0750 -o elektronn -g elektronn /var/lib/elektronnd/data' <<<"$calls" ||
  fail "postinst does not create the data directory: $calls"
sh -n "$tmp/control/prerm" && sh -n "$tmp/control/postrm" || fail "prerm/postrm do not parse"

# --- unpacked into a scratch root ----------------------------------------------------------------
root=$tmp/root
dpkg -x "$deb" "$root"
bin=$root/usr/bin
for b in elektronn elektronnd elektronn-worker elektronn-sched; do
  if readelf -d "$bin/$b" | grep -qE 'R(UN)?PATH'; then
    fail "$b keeps an RPATH: $(readelf -d "$bin/$b" | grep -E 'R(UN)?PATH')"
  fi
done
version=$("$bin/elektronn" --version) || fail "elektronn --version failed"
[[ $version =~ ^elektronn\ [0-9]+\.[0-9]+\.[0-9]+\ \(revision\ [^,]+,\ protocol\ [0-9]+\)$ ]] ||
  fail "elektronn --version: '$version'"
for b in elektronnd elektronn-worker elektronn-sched; do
  v=$("$bin/$b" --version) || fail "$b --version failed"
  [[ $v == "$b ${version#elektronn }" ]] || fail "$b --version '$v' differs from '$version'"
done
zcat "$root/usr/share/man/man1/elektronnd.1.gz" | grep -q -- 'state\\-dir' ||
  fail "the man page of elektronnd lacks --state-dir (help2man output?)"

unit=$root/usr/lib/systemd/system/elektronnd.service
grep -qE '^ExecStart=/usr/bin/elektronnd .*--state-dir /var/lib/elektronnd .*--data-dir ' "$unit" ||
  fail "the unit does not start /usr/bin/elektronnd with state and data dirs: $(grep ExecStart "$unit")"
grep -qE '^Environment=ELEKTRONND_LISTEN=127\.0\.0\.1:' "$unit" || fail "the unit is not loopback by default"
grep -qxF 'User=elektronn' "$unit" && grep -qxF 'KillMode=mixed' "$unit" &&
  grep -qxF 'ReadWritePaths=/var/lib/elektronnd' "$unit" ||
  fail "the unit lacks User=elektronn, KillMode=mixed or ReadWritePaths"
# verify resolves the unit's dependencies (sysinit.target, ...) inside --root: lend it the
# system's units next to ours, and the root's man pages for Documentation=man:.
cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
[[ -f $root/usr/lib/systemd/system/sysinit.target ]] ||
  fail "no /usr/lib/systemd/system/sysinit.target here to verify against (install systemd)"
MANPATH=$root/usr/share/man systemd-analyze verify --root="$root" elektronnd.service \
  >"$tmp/verify.log" 2>&1 || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify failed"; }
[[ ! -s $tmp/verify.log ]] || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify warns"; }
echo "systemd-analyze verify: clean"

# --- the installed daemon, once --------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
state=$tmp/state
mkdir -p "$tmp/data"
env -u ELEKTRONN_WORKER "$bin/elektronnd" --listen "127.0.0.1:$port" --state-dir "$state" \
  --data-dir "$tmp/data" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
  grep -q 'listening on' "$tmp/daemon.log" && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; fail "elektronnd exited"; }
  sleep 0.2
done
grep -q 'listening on' "$tmp/daemon.log" || { cat "$tmp/daemon.log" >&2; fail "elektronnd did not start"; }
grep -qF "worker $bin/elektronn-worker," "$tmp/daemon.log" ||
  fail "the installed elektronnd does not use the worker next to it: $(cat "$tmp/daemon.log")"
conn=(--host "127.0.0.1:$port" --token-file "$state/token")
hosts=$("$bin/elektronn" hosts "${conn[@]}" 2>"$tmp/hosts.err") ||
  fail "elektronn hosts failed: $(cat "$tmp/hosts.err")"
echo "$hosts"
revision=${version#*revision }
revision=${revision%%,*}
grep -qF "(${revision})" <<<"$hosts" || fail "elektronn hosts does not show the daemon's revision $revision"
[[ ! -s $tmp/hosts.err ]] || fail "elektronn hosts warns: $(cat "$tmp/hosts.err")"

PYTHONPATH=$root/usr/lib/python3/dist-packages /usr/bin/python3 - "127.0.0.1:$port" "$state/token" <<'PY' ||
import sys
import elektronn_client as ek
c = ek.connect(sys.argv[1], token_file=sys.argv[2])
r = c.resources()
assert r.daemon.protocol_version > 0 and r.cpu_count > 0, r
PY
  fail "the installed Python client cannot reach the daemon"

# bash completion: subcommands and options from the installed binary.
words=$(PATH=$bin:$PATH bash -c '
  source "$1"
  COMP_WORDS=(elektronn st); COMP_CWORD=1; _elektronn; echo "${COMPREPLY[*]}"
  COMP_WORDS=(elektronn hosts --j); COMP_CWORD=2; _elektronn; echo "${COMPREPLY[*]}"
' _ "$root/usr/share/bash-completion/completions/elektronn")
[[ $words == $'stats status\n--json' || $words == $'status stats\n--json' ]] ||
  fail "bash completion: got '$words'"

kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "elektronnd exited $? on SIGTERM: $(tail -3 "$tmp/daemon.log")"
daemon_pid=""
grep -q 'elektronnd stopped' "$tmp/daemon.log" || fail "no clean stop on SIGTERM"
echo "package test passed"
