# syntax=docker/dockerfile:1
#
# jwt-authz container image.
#
#   docker build -t jwt-authz .
#   docker run --rm -p 9191:9191 -p 9192:9192 jwt-authz serve --issuer https://TENANT.auth0.com/ --audience https://api.example.com

# ---- build -------------------------------------------------------------------
# The slim Rust image already ships gcc and libc6-dev, which is all the C code needs:
# aws-lc-sys (behind jsonwebtoken's aws_lc_rs backend and rustls) compiles AWS-LC with
# the cc crate on x86_64/aarch64 Linux, using its pre-generated bindings, and ring also
# builds with cc. cmake, clang/bindgen, Go and NASM are not needed on these targets.
# The .proto files are compiled by protox (pure Rust), so no protoc either.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependency layer: build all dependencies against placeholder sources, so that editing
# src/ does not recompile them. Rebuilt only when the manifest, lockfile, build script
# or protos change.
# The workspace's other member (bench/) only needs a manifest and placeholder targets to
# load: nothing of it is built here.
COPY Cargo.toml Cargo.lock build.rs ./
COPY bench/Cargo.toml ./bench/
COPY proto ./proto
RUN mkdir -p src bench/loadgen bench/benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for f in loadgen/main.rs benches/check.rs benches/verify.rs; do echo 'fn main() {}' > "bench/$f"; done \
 && cargo build --release --locked --bin jwt-authz \
 && rm -rf src

COPY src ./src
# COPY keeps the files' original mtimes, which can be older than the placeholder build;
# touch them so cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin jwt-authz \
 && cp target/release/jwt-authz /jwt-authz

# ---- runtime -----------------------------------------------------------------
# distroless/cc has glibc, libgcc and the CA bundle (needed to fetch JWKS over HTTPS),
# and no shell or package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /jwt-authz /usr/local/bin/jwt-authz
# 65532 is the image's "nonroot" user. It is given by number so that Kubernetes'
# runAsNonRoot check can verify it (a user name cannot be checked and is refused).
USER 65532:65532
# 9191: gRPC (ext_authz Check, health, reflection). 9192: admin HTTP (/healthz, /readyz, /metrics).
EXPOSE 9191 9192
ENTRYPOINT ["/usr/local/bin/jwt-authz"]
CMD ["serve"]
