//! The Lambda binary reads its configuration from the environment, and a wrong environment
//! stops it at cold start with one line that names the variable.

use std::process::Command;

/// Runs `consumer-lambda` with only `vars` in its environment; its exit status and stderr.
fn cold_start(vars: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_consumer-lambda"))
        .env_clear()
        // No instance metadata lookups from a test.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(vars.iter().copied())
        .output()
        .expect("consumer-lambda runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    )
}

#[test]
fn a_wrong_environment_is_named_at_cold_start() {
    for (vars, expected) in [
        (&[][..], "LAKE_URL is not set"),
        (&[("LAKE_URL", "")][..], "LAKE_URL is not set"),
        (&[("LAKE_URL", "ftp://x")][..], r#"LAKE_URL=\"ftp://x\""#),
        (
            &[
                ("LAKE_URL", "s3://bucket/lake"),
                ("CONSUMER_COMPRESSION", "lz4"),
            ][..],
            "zstd or snappy",
        ),
    ] {
        let (succeeded, output) = cold_start(vars);
        assert!(!succeeded, "{vars:?}: {output}");
        assert!(output.contains(expected), "{vars:?}: {output}");
        assert!(!output.contains("panicked"), "{vars:?}: {output}");
    }
}

#[test]
fn a_right_environment_gets_past_the_configuration() {
    // With a valid configuration the function goes on to look for the Lambda runtime API,
    // which only Lambda (or `cargo lambda watch`) provides, and says so without a panic.
    let (succeeded, output) = cold_start(&[
        ("LAKE_URL", "file:///nonexistent/lake"),
        ("CONSUMER_COMPRESSION", "SNAPPY"),
        ("METRICS_NAMESPACE", "Test"),
    ]);
    assert!(!succeeded, "{output}");
    assert!(!output.contains("bad configuration"), "{output}");
    assert!(
        output.contains("AWS_LAMBDA_RUNTIME_API is not set"),
        "{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
}
