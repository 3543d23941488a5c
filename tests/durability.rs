//! Acknowledged events survive SIGKILL: a few kill/restart cycles of the real
//! binary under concurrent load. `cargo bench --bench crash_cycles` runs many.

#[path = "common/crash.rs"]
mod crash;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let cycles = std::env::var("MODELTRAIL_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (size, acked) = crash::run_cycles(
        env!("CARGO_BIN_EXE_modeltrail"),
        cycles,
        16,
        std::time::Duration::from_millis(700),
    )
    .await;
    assert!(acked > 0, "no append was acknowledged");
    assert!(size >= acked as u64);
    eprintln!("{cycles} cycles: {acked} acknowledged, tree size {size}");
}
