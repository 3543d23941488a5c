//! The example scenario (`cargo run --release --example scenario`), run as
//! a test against a real server with the example's gates, so the README's
//! walk through cannot silently break.

#[path = "../../examples/scenario.rs"]
pub(crate) mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_scenario_runs_end_to_end_twice() {
    let policy_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/registry.toml");
    let text = std::fs::read_to_string(policy_file).unwrap();
    let file: modeltrail::server::FileConfig = toml::from_str(&text).unwrap();
    let gates = file.registry.unwrap();
    assert_eq!(gates.production.min_human_approvals, Some(2));
    let mut s = crate::common::start_with(|c| c.registry = gates.clone()).await;
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
