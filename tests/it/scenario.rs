//! The example scenario (`cargo run --release --example scenario`), run as
//! a test against a real server with the example's gates, so the README's
//! walk through cannot silently break.

#[path = "../../examples/scenario.rs"]
pub(crate) mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_scenario_runs_end_to_end_twice() {
    let mut s = crate::common::start_with(with_example_gates()).await;
    for _ in 0..2 {
        let tree = example::run(&s.base, &s.token, &s.vkey).await.unwrap();
        assert!(tree.starts_with("prediction:P2-"), "{tree}");
        for node in [
            "deployment:",
            "model_version:fraud:v3-",
            "run:run-933-",
            "dataset:ds:2025-05-01-",
            "commit:9f1c2e7",
        ] {
            assert!(tree.contains(node), "{node} missing from\n{tree}");
        }
    }
    s.stop().await;
}

/// A server config tweak: the example's promotion gates
/// (examples/registry.toml).
pub(crate) fn with_example_gates() -> impl FnOnce(&mut modeltrail::server::ServerConfig) {
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/registry.toml");
    let file: modeltrail::server::FileConfig =
        toml::from_str(&std::fs::read_to_string(policy).unwrap()).unwrap();
    let gates = file.registry.unwrap();
    move |c| c.registry = gates
}

/// Run the example scenario against `s`; the id of the prediction its
/// trace starts from.
pub(crate) async fn run_example(s: &crate::common::TestServer) -> String {
    let tree = example::run(&s.base, &s.token, &s.vkey).await.unwrap();
    tree.lines()
        .next()
        .and_then(|l| l.strip_prefix("prediction:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no prediction at the start of\n{tree}"))
        .to_string()
}
