//! Unit tests of the parent module.

use super::*;

/// `systemd/atlas.env` lists every setting with its default: it is exactly what
/// `render_env` prints with nothing set.
#[test]
fn shipped_env_file_lists_every_setting() {
    let shipped = include_str!("../../systemd/atlas.env");
    let expected = render_env(&Raw::default());
    assert!(
        shipped == expected,
        "systemd/atlas.env is out of date; regenerate it with\n  \
         env -i cargo run -q -- check-config --format env > systemd/atlas.env"
    );
    for setting in SETTINGS {
        assert!(
            shipped.contains(&format!("\n#{}=", setting.env)),
            "{}",
            setting.env
        );
    }
}

#[test]
fn env_format_uncomments_what_is_set() {
    let env = env_from(&[("BATCH_SIZE", "8")]);
    let (raw, _) = gather(&Flags::default(), env);
    let text = render_env(&raw);
    assert!(text.contains("\nBATCH_SIZE=8\n"));
    assert!(text.contains("\n#BATCH_TIMEOUT_MS=50\n"));
}

fn env_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn the_request_memo_is_off_or_large_enough_to_hold_entries() {
    for (value, ok) in [
        ("0", true),
        ("65536", true),
        ("8388608", true),
        ("4096", false),
        ("65535", false),
    ] {
        let (raw, _) = gather(
            &Flags::default(),
            env_from(&[("ATLAS_REQUEST_MEMO_BYTES", value)]),
        );
        match build(&raw) {
            Ok(c) => assert!(ok && c.request_memo_bytes == value.parse::<usize>().unwrap()),
            Err(errors) => assert!(
                !ok && errors.iter().any(|e| e.name == "ATLAS_REQUEST_MEMO_BYTES"),
                "{value}: {errors:?}"
            ),
        }
    }
}

#[test]
fn table_defaults_parse_to_config_default() {
    let (raw, errors) = gather(&Flags::default(), |_| None);
    assert!(errors.is_empty());
    assert_eq!(build(&raw).unwrap(), Config::default());
}

/// Every setting in the table is actually parsed: an invalid value for it is reported
/// under its name (ATLAS_LOG takes any text).
#[test]
fn every_setting_is_parsed() {
    // Any text is a valid log filter, issuer or audience: those are checked below.
    let free_text = ["ATLAS_LOG", "ATLAS_JWT_ISSUER", "ATLAS_JWT_AUDIENCE"];
    for setting in SETTINGS.iter().filter(|s| !free_text.contains(&s.env)) {
        let env = env_from(&[(setting.env, "not-a-valid-value")]);
        let (raw, _) = gather(&Flags::default(), env);
        let errors = build(&raw).expect_err(setting.env);
        assert!(
            errors.iter().any(|e| e.name == setting.env),
            "{} is in the table but never parsed",
            setting.env
        );
    }
}

#[test]
fn free_text_settings_are_parsed() {
    let env = env_from(&[
        ("ATLAS_JWT_ISSUER", "https://id.example"),
        ("ATLAS_JWT_AUDIENCE", "atlas"),
    ]);
    let (raw, _) = gather(&Flags::default(), env);
    let c = build(&raw).unwrap();
    assert_eq!(c.jwt_issuer.as_deref(), Some("https://id.example"));
    assert_eq!(c.jwt_audience.as_deref(), Some("atlas"));
}

#[test]
fn every_bad_value_is_reported_by_name() {
    let env = env_from(&[
        ("ATLAS_CORES", "zero"),
        ("BATCH_SIZE", "0"),
        ("ALERT_ERROR_RATE", "2"),
        ("ENABLE_PROMETHEUS", "maybe"),
    ]);
    let (raw, _) = gather(&Flags::default(), env);
    let errors = build(&raw).unwrap_err();
    let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ATLAS_CORES",
            "BATCH_SIZE",
            "ENABLE_PROMETHEUS",
            "ALERT_ERROR_RATE"
        ]
    );
    assert!(errors[0]
        .to_string()
        .contains("ATLAS_CORES=\"zero\" (from environment)"));
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let dir = std::env::temp_dir().join(format!("atlas-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("atlas.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\ncores = 1\nbatch_size = 8\nmax_connections = 7\n",
    )
    .unwrap();
    let flags = Flags {
        listen: Some("127.0.0.1:3".into()),
        cores: None,
        config_file: Some(file.clone()),
    };
    let env = env_from(&[("ATLAS_LISTEN", "127.0.0.1:2"), ("BATCH_SIZE", "16")]);
    let (raw, errors) = gather(&flags, env);
    assert!(errors.is_empty(), "{errors:?}");
    let c = build(&raw).unwrap();
    assert_eq!(c.listen.port(), 3);
    assert_eq!(c.batch_size, 16);
    assert_eq!(c.cores, Some(1));
    assert_eq!(c.max_connections, 7);
    assert_eq!(c.batch_timeout, Duration::from_millis(50));
    let rendered = render(&raw);
    assert!(rendered.contains("# flag"));
    assert!(rendered.contains(&format!("# file {}", file.display())));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unknown_file_keys_are_rejected() {
    let dir = std::env::temp_dir().join(format!("atlas-config-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("atlas.toml");
    std::fs::write(&file, "lisen = \"x\"\n[table]\na = 1\n").unwrap();
    let flags = Flags {
        config_file: Some(file),
        ..Flags::default()
    };
    let (_, errors) = gather(&flags, |_| None);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].problem.contains("unknown key `lisen`"));
    std::fs::remove_dir_all(dir).unwrap();
}
