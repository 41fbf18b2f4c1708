//! A quick measure of how fast the machine is right now, recorded at the start of a run.
//!
//! The virtual machines this runs on change speed by the hour (docs/bench/notes.md): the same
//! build measured twice the throughput forty minutes apart. Two figures let a reader compare
//! runs: a loopback TCP round trip (a write, a wake-up and a read each way: what every delivery
//! costs) and a fixed CPU loop. Lower is faster. Each is the median of a few rounds, so a
//! single hiccup doesn't decide it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use serde_json::{Value, json};

const ROUNDS: usize = 5;
const ROUND_TRIPS: usize = 2_000;
const LOOP_ITERATIONS: u64 = 20_000_000;

/// `{"loopback_rtt_us": …, "cpu_loop_ms": …}`, or null figures where the probe failed.
pub fn run() -> Value {
    json!({
        "loopback_rtt_us": loopback_rtt_us().ok(),
        "cpu_loop_ms": cpu_loop_ms(),
    })
}

/// Microseconds per 32-byte round trip between two threads over loopback TCP.
fn loopback_rtt_us() -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut peer, _) = listener.accept()?;
        peer.set_nodelay(true)?;
        let mut buf = [0u8; 32];
        loop {
            match peer.read_exact(&mut buf) {
                Ok(()) => peer.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = [7u8; 32];
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..ROUND_TRIPS {
            stream.write_all(&buf)?;
            stream.read_exact(&mut buf)?;
        }
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / ROUND_TRIPS as f64);
    }
    drop(stream);
    let _ = echo.join();
    Ok(round2(median(rounds)))
}

/// Milliseconds for a fixed loop of integer work the optimiser can't remove.
fn cpu_loop_ms() -> f64 {
    let rounds = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for _ in 0..LOOP_ITERATIONS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    round2(median(rounds))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_measures_something() {
        let probe = super::run();
        let rtt = probe["loopback_rtt_us"]
            .as_f64()
            .expect("loopback works here");
        let cpu = probe["cpu_loop_ms"].as_f64().unwrap();
        assert!(rtt > 0.0 && rtt < 100_000.0, "{probe}");
        assert!(cpu > 0.0, "{probe}");
    }
}
