//! The HTTP contract against a fuzzer nobody here wrote: schemathesis (PyPI, pinned in
//! `tests/requirements.txt`, installed by `tests/run.sh`) reads the real binary's
//! `/openapi.json` and runs all its checks — every route, schema-valid and schema-violating
//! requests, response conformance, stateful sequences — with authentication on and an admin
//! token, a fixed seed and a bounded number of examples. Any finding fails the test.
//! `tests/schemathesis.toml` holds its configuration (and why 413 and 422 are answers a
//! schema-valid request may get).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;

#[test]
fn schemathesis_finds_no_failure_in_the_openapi_contract() {
    let token = "t".repeat(40);
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_AUTH", "required"),
            ("ATLAS_ADMIN_TOKEN", token.as_str()),
            ("ATLAS_JWT_SECRET", "an-hs256-secret-of-at-least-32-bytes!!"),
            (
                "ATLAS_EVENT_TAGS",
                "interest_rate_change=market:rates|macro",
            ),
        ],
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("atlas-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new("schemathesis")
        .current_dir(&work)
        .arg("--config-file")
        .arg(root.join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", server.url()))
        .args([
            "--checks",
            "all",
            "--seed",
            "1",
            "--max-examples",
            "40",
            "--no-color",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("schemathesis (PyPI; tests/run.sh installs it into target/test-venv)");
    let _ = std::fs::remove_dir_all(&work);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{text}",
        out.status.code()
    );
    assert!(
        text.contains("Tested: 15"),
        "every operation was tested:\n{text}"
    );
    assert!(!text.contains(" failed"), "{text}");
}
