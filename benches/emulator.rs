//! Emulator throughput: page generation on one core, and pages served over loopback HTTP.
//!
//! `cargo bench --bench emulator` reports criterion's elements/s (= users/s) for both, then
//! a plain wall-clock HTTP figure with two concurrent clients (the machine's two cores).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use pipeline::emulator::{self, ContentFault, ContentFaults, EmulatorConfig, PageParams};
use tokio_util::sync::CancellationToken;

const PAGE: u32 = 5000;

fn bench_generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    group.throughput(Throughput::Elements(u64::from(PAGE)));
    let mut page = 0;
    group.bench_function("page_of_5000", |b| {
        b.iter(|| {
            page = page % 10_000 + 1;
            let params = PageParams::new("bench", page, PAGE);
            black_box(emulator::generate_page(&params, &ContentFaults::none()))
        })
    });
    let faults = ContentFaults::new(
        0.05,
        [
            ContentFault::MissingField,
            ContentFault::WrongType,
            ContentFault::InvalidUuid,
            ContentFault::BadDate,
        ],
    );
    group.bench_function("page_of_5000_5pct_bad", |b| {
        b.iter(|| {
            page = page % 10_000 + 1;
            let params = PageParams::new("bench", page, PAGE);
            black_box(emulator::generate_page(&params, &faults))
        })
    });
    group.finish();
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Runtime,
}

fn start_server() -> Result<Server, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shutdown = CancellationToken::new();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let token = shutdown.clone();
    runtime.spawn(emulator::serve(listener, EmulatorConfig::default(), token));
    Ok(Server {
        addr,
        shutdown,
        runtime,
    })
}

async fn fetch(client: &reqwest::Client, addr: SocketAddr, page: u32) -> usize {
    let url = format!("http://{addr}/api/?results={PAGE}&seed=bench&page={page}");
    match client.get(url).send().await {
        Ok(response) => response.bytes().await.map(|b| b.len()).unwrap_or_default(),
        Err(_) => 0,
    }
}

fn bench_http(c: &mut Criterion, server: &Server) {
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(u64::from(PAGE)));
    group.sample_size(20);
    let mut page = 0;
    group.bench_function("get_page_of_5000", |b| {
        b.iter(|| {
            page = page % 10_000 + 1;
            let bytes = server.runtime.block_on(fetch(&client, server.addr, page));
            assert!(bytes > 1_000_000, "short body: {bytes} bytes");
        })
    });
    group.finish();
}

/// Two clients fetching 5000-user pages back to back for a few seconds.
fn http_wall_clock(server: &Server, run_for: Duration) {
    let addr = server.addr;
    let (users, bytes, elapsed) = server.runtime.block_on(async move {
        let started = Instant::now();
        let clients = (0..2u32).map(|worker| {
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut users, mut bytes, mut page) = (0u64, 0u64, worker * 5000);
                while started.elapsed() < run_for {
                    page += 1;
                    let got = fetch(&client, addr, page).await;
                    if got > 0 {
                        users += u64::from(PAGE);
                        bytes += got as u64;
                    }
                }
                (users, bytes)
            })
        });
        let (mut users, mut bytes) = (0, 0);
        for handle in clients.collect::<Vec<_>>() {
            if let Ok((u, b)) = handle.await {
                users += u;
                bytes += b;
            }
        }
        (users, bytes, started.elapsed().as_secs_f64())
    });
    println!(
        "http wall clock, 2 clients, {run_for:?}: {users} users, {:.0} users/s, {:.0} MB/s",
        users as f64 / elapsed,
        bytes as f64 / elapsed / 1e6
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_generate(&mut c);
    let server = match start_server() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot start the emulator on loopback, skipping HTTP benches: {e}");
            c.final_summary();
            return;
        }
    };
    bench_http(&mut c, &server);
    c.final_summary();
    // Only under `cargo bench` (criterion's test mode runs each bench once and must be quick).
    if std::env::args().any(|a| a == "--bench") {
        http_wall_clock(&server, Duration::from_secs(4));
    }
    server.shutdown.cancel();
}
