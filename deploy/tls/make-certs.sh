#!/usr/bin/env bash
# Creates a private CA and a server certificate for elektronnd (example; review before use).
# Usage: make-certs.sh HOSTNAME OUTDIR
set -euo pipefail
host=${1:?usage: make-certs.sh HOSTNAME OUTDIR}
out=${2:?usage: make-certs.sh HOSTNAME OUTDIR}
mkdir -p "$out"
cd "$out"
umask 077
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=elektronn-ca" \
  -keyout ca.key -out ca.crt
openssl req -newkey rsa:3072 -nodes -subj "/CN=$host" -keyout server.key -out server.csr
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$host" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
  -extfile server.ext -out server.crt
rm -f server.csr server.ext
echo "wrote $out/ca.crt (give to clients), $out/server.crt and $out/server.key (daemon only)"
