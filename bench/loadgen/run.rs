//! The Check load itself: a closed loop (connections x streams, each waiting for its
//! answer before sending again) or an open loop (a fixed rate, each latency timed from the
//! request's scheduled send time so that a stalled server cannot hide its queue).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use jwt_authz::testkit::allows;
use jwt_authz::wire::proto::CheckResponse;
use prost::Message;
use tonic::transport::Endpoint;

use crate::CheckArgs;
use crate::client::{Client, Payload};
use crate::procstat;
use crate::request::Template;
use crate::tokens::Pool;

/// What one worker (or the whole open loop) saw while measuring.
struct Tally {
    latency: Histogram<u64>,
    allow: u64,
    deny: u64,
    /// Allowed when a deny was expected, or the other way round.
    unexpected: u64,
    /// The RPC itself failed.
    rpc_errors: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, 120_000_000_000, 3)
                .expect("invariant: constant histogram bounds are valid"),
            allow: 0,
            deny: 0,
            unexpected: 0,
            rpc_errors: 0,
        }
    }

    fn record(
        &mut self,
        latency: Duration,
        outcome: &Result<tonic::Response<CheckResponse>, tonic::Status>,
        expect_allow: bool,
    ) {
        self.latency
            .saturating_record(latency.as_nanos().max(1) as u64);
        match outcome {
            Err(_) => self.rpc_errors += 1,
            Ok(response) => {
                let allowed = allows(response.get_ref());
                if allowed {
                    self.allow += 1;
                } else {
                    self.deny += 1;
                }
                if allowed != expect_allow {
                    self.unexpected += 1;
                }
            }
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("invariant: histograms share their bounds");
        self.allow += other.allow;
        self.deny += other.deny;
        self.unexpected += other.unexpected;
        self.rpc_errors += other.rpc_errors;
    }

    fn count(&self) -> u64 {
        self.latency.len()
    }
}

/// State shared by the workers.
struct Shared {
    template: Template,
    /// Every distinct request, encoded once (not with `--generated-client`).
    encoded: Option<Vec<Bytes>>,
    pool: Pool,
    no_auth: bool,
    /// Index of the next token.
    next: AtomicUsize,
    measuring: AtomicBool,
    stop: AtomicBool,
    /// Measured requests started, for `--requests`.
    claimed: AtomicU64,
    limit: Option<u64>,
}

impl Shared {
    /// The next request and whether the server must allow it.
    fn next_request(&self) -> (Payload, bool) {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let (token, valid) = self.pool.get(i);
        let payload = match &self.encoded {
            Some(encoded) => Payload::Encoded(encoded[i % encoded.len()].clone()),
            None => Payload::Message(Box::new(self.template.build(token))),
        };
        (payload, valid && !self.no_auth)
    }
}

/// Resource use over the measured window.
struct Window {
    started: Instant,
    server_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
}

impl Window {
    fn open(server_pid: Option<u32>) -> Window {
        Window {
            started: Instant::now(),
            server_cpu: server_pid.and_then(procstat::cpu_time),
            own_cpu: procstat::own_cpu_time(),
        }
    }
}

pub async fn check(args: &CheckArgs, pool: Pool) -> anyhow::Result<()> {
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections.max(1) {
        let channel = Endpoint::from_shared(format!("http://{}", args.addr))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        clients.push(Client::new(channel, args.generated_client));
    }
    let template = Template::new(args);
    let request_bytes = template.build(pool.get(0).0).encoded_len();
    let encoded = (!args.generated_client).then(|| {
        (0..pool.len())
            .map(|i| Bytes::from(template.build(pool.get(i).0).encode_to_vec()))
            .collect()
    });
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate}/s over {} connections", clients.len()),
        None => format!(
            "closed loop, {} connections x {} streams",
            clients.len(),
            args.streams
        ),
    };
    let span = match args.requests {
        Some(n) => format!("{n} requests"),
        None => format!("{:?}", args.duration),
    };
    println!(
        "check {}: {mode}, {span} after {:?} warmup, {} tokens ({} invalid){}, request {request_bytes} bytes",
        args.addr,
        args.warmup,
        pool.len(),
        pool.invalid(),
        if args.no_auth {
            ", no authorization header"
        } else {
            ""
        },
    );
    let shared = Arc::new(Shared {
        template,
        encoded,
        pool,
        no_auth: args.no_auth,
        next: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        claimed: AtomicU64::new(0),
        limit: args.requests,
    });
    let (tally, window, ended, lag) = match args.rate {
        None => closed_loop(args, &shared, &clients).await,
        Some(rate) => open_loop(args, &shared, &clients, rate).await?,
    };
    report(args, &tally, &window, ended, lag.as_ref());
    Ok(())
}

async fn closed_loop(
    args: &CheckArgs,
    shared: &Arc<Shared>,
    clients: &[Client],
) -> (Tally, Window, Instant, Option<Histogram<u64>>) {
    let mut workers = Vec::new();
    for client in clients {
        for _ in 0..args.streams.max(1) {
            let shared = Arc::clone(shared);
            let mut client = client.clone();
            workers.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                while !shared.stop.load(Ordering::Relaxed) {
                    let measuring = shared.measuring.load(Ordering::Relaxed);
                    if measuring
                        && let Some(limit) = shared.limit
                        && shared.claimed.fetch_add(1, Ordering::Relaxed) >= limit
                    {
                        shared.stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    let (request, expect_allow) = shared.next_request();
                    let sent = Instant::now();
                    let outcome = client.check(request).await;
                    if measuring {
                        tally.record(sent.elapsed(), &outcome, expect_allow);
                    }
                }
                tally
            }));
        }
    }
    tokio::time::sleep(args.warmup).await;
    let window = Window::open(args.server_pid);
    shared.measuring.store(true, Ordering::Relaxed);
    if args.requests.is_none() {
        tokio::time::sleep(args.duration).await;
        shared.measuring.store(false, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
    }
    let mut tally = Tally::new();
    for worker in workers {
        if let Ok(t) = worker.await {
            tally.merge(&t);
        }
    }
    (tally, window, Instant::now(), None)
}

async fn open_loop(
    args: &CheckArgs,
    shared: &Arc<Shared>,
    clients: &[Client],
    rate: f64,
) -> anyhow::Result<(Tally, Window, Instant, Option<Histogram<u64>>)> {
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let measured_for = match args.requests {
        Some(n) => interval.mul_f64(n as f64),
        None => args.duration,
    };
    let total = args.warmup + measured_for;
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + args.warmup;

    // The pacer is a plain thread: the runtime's timer has millisecond resolution, which
    // would bunch sends together and charge the wait to the server.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let pacer = std::thread::spawn(move || {
        for i in 0usize.. {
            let at = start + interval.mul_f64(i as f64);
            if at >= start + total {
                break;
            }
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send((i, at)).is_err() {
                break;
            }
        }
    });

    let tally = Arc::new(Mutex::new(Tally::new()));
    let mut lag = Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3)
        .expect("invariant: constant histogram bounds are valid");
    let mut window = None;
    let mut tasks = tokio::task::JoinSet::new();
    while let Some((i, scheduled)) = rx.recv().await {
        let measured = scheduled >= measure_from;
        if measured {
            if window.is_none() {
                window = Some(Window::open(args.server_pid));
            }
            lag.saturating_record(scheduled.elapsed().as_nanos().max(1) as u64);
        }
        let mut client = clients[i % clients.len()].clone();
        let (request, expect_allow) = shared.next_request();
        let tally = Arc::clone(&tally);
        tasks.spawn(async move {
            let outcome = client.check(request).await;
            let latency = scheduled.elapsed();
            if measured {
                tally
                    .lock()
                    .expect("invariant: no panic while holding the tally")
                    .record(latency, &outcome, expect_allow);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = pacer.join();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        eprintln!("some Checks were still unanswered 30s after the last send");
    }
    let ended = Instant::now();
    let tally = std::mem::replace(
        &mut *tally
            .lock()
            .expect("invariant: no panic while holding the tally"),
        Tally::new(),
    );
    let window = window.unwrap_or_else(|| Window::open(args.server_pid));
    Ok((tally, window, ended, Some(lag)))
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn report(
    args: &CheckArgs,
    tally: &Tally,
    window: &Window,
    ended: Instant,
    lag: Option<&Histogram<u64>>,
) {
    let elapsed = ended.duration_since(window.started).as_secs_f64();
    let n = tally.count();
    let rps = n as f64 / elapsed;
    let h = &tally.latency;
    println!(
        "requests {n} in {elapsed:.2}s = {rps:.0}/s; allow {} deny {} unexpected {} rpc errors {}",
        tally.allow, tally.deny, tally.unexpected, tally.rpc_errors
    );
    println!(
        "latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
        us(h, 0.5),
        us(h, 0.9),
        us(h, 0.99),
        us(h, 0.999),
        h.max() as f64 / 1e3,
        h.mean() / 1e3
    );
    if let Some(lag) = lag {
        println!(
            "pacer lag us (send delay of the load generator, included above): p50 {:.1}  p99 {:.1}",
            us(lag, 0.5),
            us(lag, 0.99)
        );
    }
    let mut result = format!(
        "RESULT requests={n} rps={rps:.0} allow={} deny={} errors={} p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
        tally.allow,
        tally.deny,
        tally.unexpected + tally.rpc_errors,
        us(h, 0.5),
        us(h, 0.9),
        us(h, 0.99),
        us(h, 0.999),
        h.max() as f64 / 1e3
    );
    let server = args
        .server_pid
        .and_then(|pid| Some((pid, window.server_cpu?, procstat::cpu_time(pid)?)));
    if let Some((pid, before, after)) = server {
        let cpu = after.saturating_sub(before).as_secs_f64();
        let per = cpu * 1e6 / n.max(1) as f64;
        let rss = procstat::rss_kib(pid).unwrap_or(0);
        println!(
            "server pid {pid}: cpu {cpu:.2}s over {elapsed:.2}s ({:.0}% of a core) = {per:.1} us/check; VmRSS {rss} KiB",
            100.0 * cpu / elapsed
        );
        result.push_str(&format!(
            " server_cpu_us={per:.1} server_util={:.2} server_rss_kib={rss}",
            cpu / elapsed
        ));
    }
    if let (Some(before), Some(after)) = (window.own_cpu, procstat::own_cpu_time()) {
        let cpu = after.saturating_sub(before).as_secs_f64();
        println!(
            "loadgen: cpu {cpu:.2}s ({:.0}% of a core) = {:.1} us/check",
            100.0 * cpu / elapsed,
            cpu * 1e6 / n.max(1) as f64
        );
        result.push_str(&format!(" loadgen_util={:.2}", cpu / elapsed));
    }
    println!("{result}");
}
