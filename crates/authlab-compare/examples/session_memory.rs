//! The session-memory probe of `authlab compare` on its own: RSS per live session and verify time
//! at each population, without starting any server or touching Redis.
//!
//! ```text
//! cargo run --release -p authlab-compare --example session_memory -- 10000,100000,1000000
//! ```
//!
//! Each population is measured in a fresh process: run it once per size for figures that do not
//! depend on what an earlier, smaller population left in the allocator.

use std::sync::atomic::AtomicBool;

use authlab_compare::probes::session_population;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "10000,100000,1000000".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("no runtime: {err}");
            std::process::exit(1);
        }
    };
    let cancel = AtomicBool::new(false);
    println!("sessions\trss_delta_bytes\tbytes_per_session\tverify_ns");
    runtime.block_on(session_population(&sizes, &cancel, |p| {
        println!(
            "{}\t{}\t{:.1}\t{:.1}",
            p.sessions, p.rss_delta_bytes, p.bytes_per_session, p.verify_ns
        );
    }));
}
