#!/usr/bin/env bash
# Creates a private CA, a server certificate and optional client certificates for elektronnd.
# Usage: make-certs.sh HOSTNAME OUTDIR [CLIENT_NAME...]
#   HOSTNAME     the daemon's DNS name or IP address, put into its certificate's subjectAltName;
#                more names in $EXTRA_SANS, e.g. EXTRA_SANS=IP:10.0.0.5,DNS:gpu3
#   CLIENT_NAME  also writes client-NAME.crt and client-NAME.key, for a daemon started with
#                --tls-client-ca OUTDIR/ca.crt (mutual TLS)
# A CA already in OUTDIR (ca.crt and ca.key) is reused, so what it signed before stays valid;
# server.crt/server.key are written anew on every run. Keys are ECDSA P-256, files mode 0600.
set -euo pipefail
usage="usage: make-certs.sh HOSTNAME OUTDIR [CLIENT_NAME...]"
host=${1:?$usage}
out=${2:?$usage}
shift 2
if ! command -v openssl >/dev/null; then
  echo "make-certs.sh: needs the openssl CLI (apt-get install openssl)" >&2
  exit 1
fi
mkdir -p "$out"
cd "$out"
umask 077
days=825
newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

if [[ -f ca.key && -f ca.crt ]]; then
  echo "reusing the CA in $out (ca.crt, ca.key)"
else
  openssl req -x509 "${newkey[@]}" -days "$days" -subj "/CN=elektronn-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.crt 2>/dev/null
fi

# Signs NAME.csr with the CA into NAME.crt with the extensions in $1.
sign() {
  local ext=$1 name=$2
  printf '%b' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then san="IP:$host"; else san="DNS:$host"; fi
[[ -n ${EXTRA_SANS:-} ]] && san="$san,$EXTRA_SANS"
openssl req "${newkey[@]}" -subj "/CN=$host" -keyout server.key -out server.csr 2>/dev/null
sign "subjectAltName=$san\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n" server

for name in "$@"; do
  [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "make-certs.sh: bad client name '$name'" >&2; exit 2; }
  openssl req "${newkey[@]}" -subj "/CN=$name" -keyout "client-$name.key" \
    -out "client-$name.csr" 2>/dev/null
  sign "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n" "client-$name"
done

echo "wrote $out/ca.crt (give to clients), $out/server.crt and $out/server.key (daemon only)" \
  "for $san${*:+, and client certificates for: $*}"
