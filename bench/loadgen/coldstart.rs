//! Cold start: the time from spawning the server to its first `SERVING` answer on
//! grpc.health.v1 (keys loaded), polled every 200 µs.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tonic::transport::Endpoint;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::ColdstartArgs;

const POLL: Duration = Duration::from_micros(200);

pub async fn run(args: &ColdstartArgs) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let started = Instant::now();
        let mut child = std::process::Command::new(&args.command[0])
            .args(&args.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", args.command[0]))?;
        let outcome = wait_serving(args.addr, args.timeout, started).await;
        // Only the child this run started is stopped, by its own handle.
        let _ = child.kill();
        let _ = child.wait();
        let elapsed = outcome?;
        println!("run {run}: exec to SERVING {:.2} ms", ms(elapsed));
        times.push(elapsed);
        std::thread::sleep(Duration::from_millis(100));
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "cold start over {} runs: median {:.2} ms, min {:.2} ms, max {:.2} ms",
        times.len(),
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    println!(
        "RESULT coldstart_runs={} coldstart_median_ms={:.2} coldstart_min_ms={:.2} coldstart_max_ms={:.2}",
        times.len(),
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    Ok(())
}

/// Waits until the server at `addr` answers SERVING; returns the time since `started`.
pub async fn wait_serving(
    addr: SocketAddr,
    timeout: Duration,
    started: Instant,
) -> anyhow::Result<Duration> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    // The listener is not bound yet: retry the connection, sleeping on this thread so the
    // poll interval is not rounded up to the runtime timer's millisecond.
    let channel = loop {
        if started.elapsed() > timeout {
            bail!("no connection to {addr} within {timeout:?}");
        }
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) => std::thread::sleep(POLL),
        }
    };
    let mut health = HealthClient::new(channel);
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("{addr} not SERVING within {timeout:?}");
        }
        std::thread::sleep(POLL);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
