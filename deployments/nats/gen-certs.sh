#!/bin/sh
# Makes the TLS certificates deployments/nats/cluster.conf needs, with
# openssl: a CA, and for each node a certificate and key.
#
#   sh deployments/nats/gen-certs.sh [DIR [NODE...]]
#
# DIR defaults to deployments/compose/certs (what compose.yaml mounts), the
# nodes to nats-1 nats-2 nats-3 (compose's NATS services). It writes
#   DIR/ca.pem, DIR/ca-key.pem          the CA (its key stays here; keep it
#                                       safe or delete it once done)
#   DIR/<node>.pem, DIR/<node>-key.pem  each node's certificate and key
# Each node certificate has the subject CN=rollcall-nats-route (the route
# identity cluster.conf lets in), the SANs DNS:<node>, DNS:localhost and
# IP:127.0.0.1, plus NATS_CERT_EXTRA_SANS if set (e.g.
# NATS_CERT_EXTRA_SANS=IP:10.0.0.5,DNS:nats.example.com), and is valid for
# both TLS server and client use (routes dial out with it).
#
# Run again, it keeps what is still good: a CA valid for 30 more days, and
# node certificates signed by it and valid for 30 more days (whatever
# their SANs: delete a node's files to change them); anything else is made
# anew. Keys are written mode 0600, certificates 0644 (the services
# run as another user than the one who made them and read ca.pem).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-"$here/../compose/certs"}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- nats-1 nats-2 nats-3
extra=${NATS_CERT_EXTRA_SANS:-}
days=${NATS_CERT_DAYS:-825}
month=2592000 # seconds: what must be left of a certificate to be kept

command -v openssl >/dev/null 2>&1 || { echo "gen-certs.sh: openssl is not installed" >&2; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077

fresh() { [ -s "$1" ] && openssl x509 -in "$1" -noout -checkend "$month" >/dev/null 2>&1; }

ca="$dir/ca.pem"
cakey="$dir/ca-key.pem"
if fresh "$ca" && [ -s "$cakey" ]; then
  echo "gen-certs.sh: keeping the CA $ca"
else
  printf '%s\n' 'basicConstraints=critical,CA:TRUE,pathlen:0' 'keyUsage=critical,keyCertSign,cRLSign' \
    'subjectKeyIdentifier=hash' >"$tmp/ca.ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca-key.pem"
  openssl req -new -key "$tmp/ca-key.pem" -subj "/O=rollcall/CN=rollcall NATS CA" -out "$tmp/ca.csr"
  openssl x509 -req -in "$tmp/ca.csr" -signkey "$tmp/ca-key.pem" -days 3650 -sha256 \
    -extfile "$tmp/ca.ext" -out "$tmp/ca.pem" 2>/dev/null
  mv "$tmp/ca-key.pem" "$cakey"
  mv "$tmp/ca.pem" "$ca"
  chmod 644 "$ca"
  echo "gen-certs.sh: made the CA $ca"
fi

for node in "$@"; do
  cert="$dir/$node.pem"
  key="$dir/$node-key.pem"
  if fresh "$cert" && [ -s "$key" ] && openssl verify -CAfile "$ca" "$cert" >/dev/null 2>&1; then
    echo "gen-certs.sh: keeping $cert"
    continue
  fi
  sans="DNS:$node,DNS:localhost,IP:127.0.0.1${extra:+,$extra}"
  printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=serverAuth,clientAuth' "subjectAltName=$sans" >"$tmp/node.ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/key.pem"
  openssl req -new -key "$tmp/key.pem" -subj "/CN=rollcall-nats-route" -out "$tmp/node.csr"
  openssl x509 -req -in "$tmp/node.csr" -CA "$ca" -CAkey "$cakey" -set_serial "0x$(openssl rand -hex 16)" \
    -days "$days" -sha256 -extfile "$tmp/node.ext" -out "$tmp/cert.pem" 2>/dev/null
  mv "$tmp/key.pem" "$key"
  mv "$tmp/cert.pem" "$cert"
  chmod 644 "$cert"
  echo "gen-certs.sh: made $cert ($sans)"
done
