//! Mixed load against the daemon at a fixed rate (`docs/security.md`): cached hits on the native and the
//! AWS-agent paths, forced misses (`refresh=true`, an upstream call each), batches and listings. Zero errors,
//! the p99 reported, and the daemon's RSS sampled through the run and flat within 10% after warm-up.
//! `KEYWAY_SOAK_SECS` (default 30; the documented long run is 600) and `KEYWAY_SOAK_RATE` (default 800/s).

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    reason = "rates and percentiles for the report; the counts are far below 2^52"
)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyway_testkit::raw;

use crate::support::Served;
use crate::support::{Ground, env_u64, proc_status_kib};

/// One request of the mix, by its sequence number; true when the answer is right.
fn one(target: &raw::Target, n: u64) -> Result<(), String> {
    let secret = n % 50;
    let (reply, want) = match n % 100 {
        0..=84 => (
            raw::get(
                target,
                &format!("/v1/secret?ref=aws-sm://soak/s{secret:02}"),
                &[],
            ),
            "value",
        ),
        85..=89 => (
            raw::get(
                target,
                &format!("/secretsmanager/get?secretId=soak/s{secret:02}"),
                &[],
            ),
            "SecretString",
        ),
        90..=95 => {
            let refs: Vec<String> = (0..5)
                .map(|k| format!("\"aws-sm://soak/s{:02}\"", (secret + k) % 50))
                .collect();
            let body = format!("{{\"refs\":[{}]}}", refs.join(","));
            (
                raw::post(target, "/v1/secrets", &[], body.as_bytes()),
                "results",
            )
        }
        96..=97 => (
            raw::get(
                target,
                &format!("/v1/secret?ref=aws-sm://soak/s{secret:02}&refresh=true"),
                &[],
            ),
            "value",
        ),
        _ => (raw::get(target, "/v1/list?provider=aws-sm", &[]), "names"),
    };
    if reply.status == 200 && !reply.json()[want].is_null() {
        Ok(())
    } else {
        Err(format!("#{n}: {} {}", reply.status, reply.text()))
    }
}

#[test]
fn mixed_load_at_a_fixed_rate_has_no_errors_and_flat_memory() {
    let seconds = env_u64("KEYWAY_SOAK_SECS", 30);
    let rate = env_u64("KEYWAY_SOAK_RATE", 800);
    let every = Duration::from_secs((seconds / 10).max(2));
    let ground = Ground::start();
    let value = "s".repeat(1024);
    for i in 0..50 {
        ground.moto.create_secret(&format!("soak/s{i:02}"), &value);
    }
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    for i in 0..50 {
        one(&unix, i).unwrap();
    }
    let pid = served.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads = 4;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (unix, stop, latencies, errors) = (
                unix.clone(),
                stop.clone(),
                latencies.clone(),
                errors.clone(),
            );
            std::thread::spawn(move || {
                // Open loop: request k of this thread is due at start + k / (rate / threads).
                let interval = Duration::from_secs_f64(threads as f64 / rate as f64);
                let start = Instant::now();
                let mut k = 0u64;
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let due = start + interval.mul_f64(k as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let began = Instant::now();
                    if let Err(e) = one(&unix, k * threads + t) {
                        errors.lock().unwrap().push(e);
                    }
                    mine.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
                    k += 1;
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    let started = Instant::now();
    let mut samples = vec![proc_status_kib(pid, "VmRSS")];
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(every);
        samples.push(proc_status_kib(pid, "VmRSS"));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let errors = errors.lock().unwrap().clone();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let warm = &samples[samples.len().min(3)..];
    let (low, high) = (
        warm.iter().min().copied().unwrap_or(0),
        warm.iter().max().copied().unwrap_or(0),
    );
    println!(
        "soak: {} requests in {elapsed:.0} s ({:.0}/s of {rate}/s asked), {} errors, p50 {:.2} ms, p99 {:.2} ms; RSS KiB every {} s: {samples:?}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        errors.len(),
        p(0.5),
        p(0.99),
        every.as_secs()
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(
        latencies.len() as f64 >= 0.9 * rate as f64 * elapsed,
        "the rate was not held: {} requests in {elapsed:.1} s",
        latencies.len()
    );
    assert!(
        high as f64 <= low as f64 * 1.10,
        "RSS grew after warm-up: {samples:?}"
    );
}
