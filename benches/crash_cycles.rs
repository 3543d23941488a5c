//! Many kill/restart cycles of the durability check (the test suite runs a
//! few): `cargo bench --bench crash_cycles -- [--cycles 50] [--clients 32]
//! [--kill-after-ms 1000] [--leaf-index-batch 64]`.

#[path = "../tests/it/common/crash.rs"]
mod crash;

fn main() {
    let (mut cycles, mut clients, mut kill_ms, mut leaf_batch) = (50usize, 32usize, 1000u64, 64);
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--cycles" => cycles = it.next().unwrap().parse().unwrap(),
            "--clients" => clients = it.next().unwrap().parse().unwrap(),
            "--kill-after-ms" => kill_ms = it.next().unwrap().parse().unwrap(),
            "--leaf-index-batch" => leaf_batch = it.next().unwrap().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = std::time::Instant::now();
    let (size, acked) = rt.block_on(crash::run_cycles(
        env!("CARGO_BIN_EXE_modeltrail"),
        cycles,
        clients,
        std::time::Duration::from_millis(kill_ms),
        leaf_batch,
    ));
    println!(
        "{cycles} SIGKILL cycles, {clients} clients: {acked} acknowledged appends, all present and verified; final tree size {size}; {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
