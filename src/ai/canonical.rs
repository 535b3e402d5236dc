//! Canonical JSON: the byte form of a request's `input` that goes into its cache key, so that
//! inputs that mean the same thing share one cache entry.
//!
//! Rules: object keys sorted (byte order), no whitespace, strings re-escaped one way, and every
//! number written from its f64 value — an integral value within ±2^53 as an integer (`1`, `1.0`
//! and `1e0` are the same), anything else in Rust's shortest round-trip form (exponent form
//! below 1e-6 and from 1e21); `-0` is `0`. Numbers are parsed correctly rounded (serde_json's
//! `float_roundtrip`), so every spelling of one value maps to the same bits.

use serde_json::Value;

use crate::error::json_string;

/// Appends the canonical form of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => json_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(out, key);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write(v, out);
                }
            }
            out.push(b'}');
        }
    }
}

/// The canonical form of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    out
}

const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < EXACT_INT {
        // Integral: `as i64` is exact below 2^53 (and turns -0 into 0).
        out.extend_from_slice((f as i64).to_string().as_bytes());
    } else if f.is_finite() && (1e-6..1e21).contains(&f.abs()) {
        out.extend_from_slice(f.to_string().as_bytes());
    } else if f.is_finite() {
        // Very small or very large: exponent form, still the shortest round-trip digits.
        out.extend_from_slice(format!("{f:e}").as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(s: &str) -> String {
        String::from_utf8(to_vec(&serde_json::from_str(s).unwrap())).unwrap()
    }

    #[test]
    fn key_order_whitespace_and_number_spelling_do_not_matter() {
        let a = canon(r#"{"b": [1, 2.50, {"y": 1e2, "x": -0}], "a": "s\u00e9"}"#);
        let b = canon(r#"{"a":"sé","b":[1.0,2.5,{"x":0,"y":100}]}"#);
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":"sé","b":[1,2.5,{"x":0,"y":100}]}"#);
    }

    #[test]
    fn different_values_stay_different() {
        assert_ne!(canon(r#"{"a":1}"#), canon(r#"{"a":1.5}"#));
        assert_ne!(canon(r#"[1,2]"#), canon(r#"[2,1]"#));
        assert_ne!(canon(r#"{"a":"1"}"#), canon(r#"{"a":1}"#));
    }

    proptest! {
        /// The canonical form is itself valid JSON and a fixed point.
        #[test]
        fn canonical_is_idempotent(x in any::<f64>().prop_filter("finite", |f| f.is_finite()),
                                   s in "\\PC{0,12}", n in any::<i32>()) {
            let v = serde_json::json!({"s": s, "n": n, "x": x, "arr": [x, n]});
            let once = to_vec(&v);
            let again = to_vec(&serde_json::from_slice::<Value>(&once).unwrap());
            prop_assert_eq!(once, again);
        }
    }
}
