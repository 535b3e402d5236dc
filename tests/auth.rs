//! Authentication and authorisation with the real binary and real keys (an HS secret, and
//! RSA and EC key pairs made with `openssl` for each run): every accept and refuse case with
//! its status and code, users confined to their own results and contexts, admin routes, the
//! start-up refusal on a public address, and the verified-token cache in `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use common::{Client, Response, Server};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ADMIN_TOKEN: &str = "operator-token-0123456789abcdefghij";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600})
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn send(c: &mut Client, method: &str, path: &str, token: Option<&str>, body: &str) -> Response {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn risk(user: &str) -> String {
    format!(
        r#"{{"user_id":"{user}","input":{{"age":35,"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}}}"#
    )
}

/// `POST /ai/risk_assessment` for `user` with `token`.
fn ai(c: &mut Client, token: &str, user: &str) -> Response {
    send(c, "POST", "/ai/risk_assessment", Some(token), &risk(user))
}

fn code(r: &Response) -> String {
    r.error_code()
}

fn hs_server() -> Server {
    Server::start(
        &["--cores", "2"],
        &[
            ("ATLAS_JWT_SECRET", SECRET),
            ("ATLAS_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
}

#[test]
fn hs_tokens_every_refusal_has_its_status_and_code() {
    let server = hs_server();
    let mut c = server.connect();
    let alice = hs(&claims("alice"));

    let r = send(&mut c, "POST", "/ai/risk_assessment", None, &risk("alice"));
    assert_eq!((r.status, code(&r)), (401, "missing_token".into()));
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer realm=\"atlas\""));
    c.send(b"POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YTpi\r\nContent-Length: 2\r\n\r\n{}");
    let r = c.read_response(false);
    assert_eq!((r.status, code(&r)), (401, "malformed_token".into()));
    assert!(r
        .header("WWW-Authenticate")
        .unwrap()
        .contains("invalid_token"));
    for (token, want) in [
        ("not-a-jwt".to_string(), "malformed_token"),
        (
            encode(
                &Header::new(Algorithm::HS256),
                &claims("alice"),
                &EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!!"),
            )
            .unwrap(),
            "bad_signature",
        ),
        (
            hs(&json!({"sub": "alice", "exp": now() - 3600})),
            "token_expired",
        ),
        (
            hs(&json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 3600})),
            "token_not_yet_valid",
        ),
        (hs(&json!({"exp": now() + 600})), "invalid_token"),
        (unsigned(&claims("alice")), "alg_none"),
    ] {
        let r = ai(&mut c, &token, "alice");
        assert_eq!((r.status, code(&r)), (401, want.to_string()), "{token}");
    }

    // Accepted, for its own user only.
    let r = ai(&mut c, &alice, "alice");
    assert_eq!(r.status, 200);
    let r = ai(&mut c, &alice, "bob");
    assert_eq!((r.status, code(&r)), (403, "user_mismatch".into()));
    // Public routes need nothing.
    for path in ["/health", "/health/ready", "/metrics", "/openapi.json"] {
        assert_eq!(send(&mut c, "GET", path, None, "").status, 200, "{path}");
    }
}

/// `{"alg":"none"}` . claims . (empty signature)
fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
}

#[test]
fn users_are_confined_to_their_own_results_and_contexts_cached_or_not() {
    let server = hs_server();
    let mut c = server.connect();
    let (alice, bob) = (hs(&claims("alice")), hs(&claims("bob")));
    // Bob's result is cached; Alice cannot read it by naming Bob.
    let r = ai(&mut c, &bob, "bob");
    assert_eq!(r.status, 200);
    assert_eq!(ai(&mut c, &bob, "bob").header("X-Atlas-Cache"), Some("hit"));
    let r = ai(&mut c, &alice, "bob");
    assert_eq!((r.status, code(&r)), (403, "user_mismatch".into()));
    // Contexts: read, write, delete only one's own.
    let ctx = r#"{"age":40}"#;
    assert_eq!(
        send(&mut c, "PUT", "/ai/context/bob", Some(&bob), ctx).status,
        200
    );
    for method in ["GET", "PUT", "DELETE"] {
        let r = send(&mut c, method, "/ai/context/bob", Some(&alice), ctx);
        assert_eq!(
            (r.status, code(&r)),
            (403, "user_mismatch".into()),
            "{method}"
        );
    }
    assert_eq!(
        send(&mut c, "GET", "/ai/context/bob", Some(&bob), "").status,
        200
    );
    // Admin routes refuse users, accept the admin role and the admin token.
    let inv = r#"{"user_id":"bob"}"#;
    for path in ["/ai/cache/invalidate", "/ai/events"] {
        let r = send(&mut c, "POST", path, Some(&alice), inv);
        assert_eq!(
            (r.status, code(&r)),
            (403, "admin_required".into()),
            "{path}"
        );
    }
    let r = send(&mut c, "GET", "/ai/admin/performance", Some(&alice), "");
    assert_eq!(r.status, 403);
    let admin = hs(&json!({"sub": "ops", "exp": now() + 600, "roles": ["admin"]}));
    let r = send(&mut c, "POST", "/ai/cache/invalidate", Some(&admin), inv);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["removed"], 1);
    assert_eq!(
        send(
            &mut c,
            "GET",
            "/ai/admin/performance",
            Some(ADMIN_TOKEN),
            ""
        )
        .status,
        200
    );
    // An admin may act for a user.
    assert_eq!(
        send(&mut c, "GET", "/ai/context/bob", Some(&admin), "").status,
        200
    );

    // The counters: repeated tokens came from the cache; refusals were counted.
    let text = String::from_utf8(send(&mut c, "GET", "/metrics", None, "").body).unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing"))
            .parse()
            .unwrap()
    };
    assert!(value(r#"ai_auth_token_cache_total{result="hit"}"#) >= 5.0);
    assert!(
        value(r#"ai_auth_token_cache_total{result="miss"}"#) <= 6.0,
        "one per token per shard at most"
    );
    assert_eq!(
        value(r#"ai_security_events_total{event="user_mismatch"}"#),
        4.0
    );
    assert_eq!(
        value(r#"ai_security_events_total{event="admin_required"}"#),
        3.0
    );
    assert!(value(r#"ai_security_events_total{event="admin_action"}"#) >= 2.0);
}

/// A key pair made by openssl: (private PEM, public PEM path).
fn keypair(kind: &str) -> (Vec<u8>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("atlas-keys-{kind}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let gen: Vec<&str> = match kind {
        "rsa" => vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        _ => vec![
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
    };
    let ok = Command::new("openssl")
        .args(&gen)
        .arg("-out")
        .arg(&private)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok);
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    (std::fs::read(&private).unwrap(), public)
}

#[test]
fn rs_and_es_tokens_and_algorithm_confusion() {
    let (rsa_private, rsa_public) = keypair("rsa");
    let server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_JWT_PUBLIC_KEY", rsa_public.to_str().unwrap()),
            ("ATLAS_JWT_ISSUER", "https://id.example"),
            ("ATLAS_JWT_AUDIENCE", "atlas"),
        ],
    );
    let mut c = server.connect();
    let rs = |claims: &Value| {
        encode(
            &Header::new(Algorithm::RS256),
            claims,
            &EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
        )
        .unwrap()
    };
    let good =
        json!({"sub": "carol", "exp": now() + 600, "iss": "https://id.example", "aud": "atlas"});
    let r = send(
        &mut c,
        "POST",
        "/ai/risk_assessment",
        Some(&rs(&good)),
        &risk("carol"),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    // Algorithm confusion: an HS256 token whose "secret" is the server's public key.
    let public_pem = std::fs::read(&rsa_public).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    for (token, want) in [
        (rs(&wrong_iss), "wrong_issuer"),
        (rs(&wrong_aud), "wrong_audience"),
        (confused, "algorithm_not_allowed"),
    ] {
        let r = ai(&mut c, &token, "carol");
        assert_eq!((r.status, code(&r)), (401, want.to_string()));
    }

    let (ec_private, ec_public) = keypair("ec");
    let server = Server::start(
        &["--cores", "1"],
        &[("ATLAS_JWT_PUBLIC_KEY", ec_public.to_str().unwrap())],
    );
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims("dave"),
        &EncodingKey::from_ec_pem(&ec_private).unwrap(),
    )
    .unwrap();
    let mut c = server.connect();
    assert_eq!(ai(&mut c, &es, "dave").status, 200);
    // An RS token against an EC key: no key of its family.
    let r = send(
        &mut c,
        "POST",
        "/ai/risk_assessment",
        Some(&rs(&good)),
        &risk("carol"),
    );
    assert_eq!(code(&r), "algorithm_not_allowed");
}

#[test]
fn a_public_address_without_auth_is_refused_unless_auth_is_explicitly_off() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atlas"));
        cmd.args(["serve", "--listen", "0.0.0.0:0", "--cores", "1"])
            .env_remove("ATLAS_AUTH")
            .env_remove("ATLAS_JWT_SECRET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    };
    let out = run(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ATLAS_AUTH=off"), "{err}");
    // Explicitly off: it starts, and says so.
    let mut child = run(&[("ATLAS_AUTH", "off")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("every route is open"), "{err}");
    // Required without a key is a configuration error.
    let out = Command::new(env!("CARGO_BIN_EXE_atlas"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cores", "1"])
        .env("ATLAS_AUTH", "required")
        .env_remove("ATLAS_JWT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn repeated_failures_from_one_address_raise_the_auth_failures_alert() {
    let server = Server::start(
        &["--cores", "1"],
        &[
            ("ATLAS_JWT_SECRET", SECRET),
            ("ATLAS_MONITOR_INTERVAL_S", "1"),
            ("ATLAS_ALERT_FOR_WINDOWS", "1"),
            ("ATLAS_ALERT_AUTH_FAILURES", "10"),
        ],
    );
    let mut c = server.connect();
    for _ in 0..30 {
        let r = ai(&mut c, "x.y.z", "mallory");
        assert_eq!(r.status, 401);
    }
    let series = r#"ai_alerts_active{alert="auth_failures",severity="warning"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8(send(&mut c, "GET", "/metrics", None, "").body).unwrap();
        if text.lines().any(|l| l == format!("{series} 1")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the alert never fired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_jwk_set_picks_the_key_by_kid() {
    let (private, _) = keypair("rsa");
    let key = EncodingKey::from_rsa_pem(&private).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = jsonwebtoken::jwk::JwkSet { keys: vec![jwk] };
    let path = std::env::temp_dir().join(format!("atlas-jwks-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&set).unwrap()).unwrap();
    let server = Server::start(
        &["--cores", "1"],
        &[("ATLAS_JWKS_FILE", path.to_str().unwrap())],
    );
    let mut c = server.connect();
    let signed = |kid: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        encode(&h, &claims("erin"), &key).unwrap()
    };
    let r = send(
        &mut c,
        "POST",
        "/ai/risk_assessment",
        Some(&signed("k1")),
        &risk("erin"),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = send(
        &mut c,
        "POST",
        "/ai/risk_assessment",
        Some(&signed("k2")),
        &risk("erin"),
    );
    assert_eq!((r.status, code(&r)), (401, "unknown_key".into()));
    let _ = std::fs::remove_file(&path);
}
