//! `loadgen`: drives the Check RPC of a running jwt-authz and reports throughput, latency
//! (an HDR histogram) and the server's CPU time per Check. It also mints the token files
//! the HTTP benchmarks replay, serves a static JWKS on loopback, and times a cold start.
//!
//! ```text
//! cargo run --release -p jwt-authz-bench --bin loadgen -- check --addr 127.0.0.1:9191 \
//!     --issuer http://127.0.0.1:18000/ --connections 2 --streams 16 --duration 10s
//! ```
//!
//! Every loop is bounded by a duration or a request count, and every address is the one
//! given on the command line (loopback in `bench/run.sh`).

mod client;
mod coldstart;
mod jwks;
mod noop;
mod procstat;
mod request;
mod run;
mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for the jwt-authz Check RPC")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Call Check in a closed loop (fixed concurrency) or an open loop (fixed rate).
    Check(Box<CheckArgs>),
    /// Mint tokens and write them to a file, one per line.
    Tokens(TokensArgs),
    /// Serve a JWKS file over HTTP/1.1 (at `/jwks.json` and `/.well-known/jwks.json`)
    /// until SIGTERM.
    Jwks(JwksArgs),
    /// Time a server from exec to grpc.health.v1 SERVING, several times.
    Coldstart(ColdstartArgs),
    /// Wait until a running server answers SERVING on grpc.health.v1.
    Wait(WaitArgs),
    /// Serve a Check that decodes the request and allows at once: the framework's floor.
    NoopServer(NoopArgs),
}

/// How the tokens are made.
#[derive(Args, Clone)]
pub struct MintArgs {
    /// PEM private key that signs the tokens.
    #[arg(long, default_value = "tests/fixtures/rsa1.pem")]
    pub key: PathBuf,
    /// `kid` written in the token header.
    #[arg(long, default_value = "rsa-1")]
    pub kid: String,
    /// Signing algorithm (RS256, PS256, ES256, ES384, EdDSA).
    #[arg(long, default_value = "RS256")]
    pub alg: String,
    /// `iss` claim; must be the server's `--issuer`.
    #[arg(long, default_value = "http://127.0.0.1:18000/")]
    pub issuer: String,
    /// `aud` claim.
    #[arg(long, default_value = "https://api.example.com")]
    pub audience: String,
    /// `scope` claim.
    #[arg(long, default_value = "openid read:messages")]
    pub scope: String,
    /// Token lifetime (`exp` = now + this).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Number of distinct tokens (they differ in `sub` and `jti`).
    #[arg(long, default_value_t = 1000)]
    pub tokens: usize,
    /// Fraction of the tokens made invalid by a flipped signature byte (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub invalid_fraction: f64,
    /// Read the tokens from this file (one per line) instead of minting them; lines
    /// beyond `--tokens` are ignored. Invalid ones are still derived by
    /// `--invalid-fraction`.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// About 1.6 KB: every request header, as Envoy sends without `allowed_headers`.
    Full,
    /// Only `authorization` in the header map, as with `allowed_headers: [authorization]`.
    Small,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Check service address.
    #[arg(long, default_value = "127.0.0.1:9191")]
    pub addr: SocketAddr,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Concurrent streams per connection (closed loop).
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// Open loop at this many Checks per second, timed from each scheduled send; without
    /// it, a closed loop of connections x streams.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured duration (`10s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many measured Checks instead of after `--duration`.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Unmeasured load before the measurement starts.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Request shape.
    #[arg(long, value_enum, default_value_t = Shape::Full)]
    pub shape: Shape,
    /// Send no `authorization` header: the cheapest Check (an immediate 401).
    #[arg(long)]
    pub no_auth: bool,
    /// Path in the CheckRequest.
    #[arg(long, default_value = "/api/private-scoped")]
    pub path: String,
    /// `required_scopes` context extension; empty sends none.
    #[arg(long, default_value = "read:messages")]
    pub required_scopes: String,
    /// PID of the server, to report its CPU time per Check from /proc/<pid>/stat.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Call through the generated `AuthorizationClient`, building and encoding every
    /// request, instead of sending requests encoded once up front.
    #[arg(long)]
    pub generated_client: bool,
    /// Tokio worker threads (1 runs everything on the calling thread).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub mint: MintArgs,
}

#[derive(Args)]
struct TokensArgs {
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    mint: MintArgs,
}

#[derive(Args)]
struct JwksArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:18000")]
    listen: SocketAddr,
    /// The JWKS document served.
    #[arg(long, default_value = "tests/fixtures/jwks.json")]
    file: PathBuf,
    /// Stop by itself after this long.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    max_time: Duration,
    /// Answer with the allow jwt-authz gives by default (status OK, `x-jwt-sub` set, its
    /// three other spellings removed) instead of an empty `CheckResponse`: the response's
    /// cost to Envoy, apart from the decision's.
    #[arg(long)]
    allow_like_jwt_authz: bool,
    /// Keep the CPU busy this many microseconds in every Check before answering: a
    /// decision's cost and latency, apart from its response.
    #[arg(long, default_value_t = 0)]
    busy_us: u64,
}

#[derive(Args)]
struct NoopArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:18099")]
    listen: SocketAddr,
    /// Stop by itself after this long.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    max_time: Duration,
    /// Answer with the allow jwt-authz gives by default (status OK, `x-jwt-sub` set, its
    /// three other spellings removed) instead of an empty `CheckResponse`: the response's
    /// cost to Envoy, apart from the decision's.
    #[arg(long)]
    allow_like_jwt_authz: bool,
    /// Keep the CPU busy this many microseconds in every Check before answering: a
    /// decision's cost and latency, apart from its response.
    #[arg(long, default_value_t = 0)]
    busy_us: u64,
}

#[derive(Args)]
struct WaitArgs {
    /// gRPC address of the server.
    #[arg(long)]
    addr: SocketAddr,
    /// Give up after this long.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Args)]
pub struct ColdstartArgs {
    /// gRPC address the server listens on.
    #[arg(long)]
    pub addr: SocketAddr,
    /// How many starts to time.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Give up on one start after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The server command line.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    jwt_authz::config::parse_duration(text)
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Check(args) => {
            let pool = tokens::Pool::from_args(&args.mint)?;
            runtime(args.threads)?.block_on(run::check(&args, pool))
        }
        Cmd::Tokens(args) => {
            let pool = tokens::Pool::from_args(&args.mint)?;
            pool.write(&args.out)?;
            eprintln!("wrote {} tokens to {}", pool.len(), args.out.display());
            Ok(())
        }
        Cmd::Jwks(args) => {
            runtime(1)?.block_on(jwks::serve(args.listen, &args.file, args.max_time))
        }
        Cmd::Coldstart(args) => runtime(1)?.block_on(coldstart::run(&args)),
        Cmd::NoopServer(args) => {
            // The same runtime as `jwt-authz serve` (#[tokio::main]: multi-threaded).
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(noop::serve(
                    args.listen,
                    args.max_time,
                    noop::Answer {
                        allow_like_jwt_authz: args.allow_like_jwt_authz,
                        busy: Duration::from_micros(args.busy_us),
                    },
                ))
        }
        Cmd::Wait(args) => {
            let started = std::time::Instant::now();
            let waited =
                runtime(1)?.block_on(coldstart::wait_serving(args.addr, args.timeout, started))?;
            eprintln!(
                "{} SERVING after {:.1} ms",
                args.addr,
                waited.as_secs_f64() * 1e3
            );
            Ok(())
        }
    }
}
