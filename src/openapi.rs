//! `GET /openapi.json`: the API description (`src/openapi.json`) as this process serves it.
//!
//! The document is static except for the event types: `POST /ai/events` takes the built-in
//! types and those configured in `ATLAS_EVENT_TAGS`, so the served document lists the
//! configured ones in a branch of its own (the others refuse a type that is not listed), and
//! a client that validates against it never sends a type this server refuses. Built once per
//! shard thread (the event types are fixed at start).

use std::cell::OnceCell;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::config::events::EventTags;

/// The document as written, before the configured event types are added.
pub const DOCUMENT: &str = include_str!("openapi.json");

thread_local! {
    static SERVED: OnceCell<Bytes> = const { OnceCell::new() };
}

/// The document this process serves, with `configured` event types.
pub fn served(configured: &[EventTags]) -> Bytes {
    SERVED.with(|doc| doc.get_or_init(|| document(configured)).clone())
}

/// [`DOCUMENT`] with a branch of `EventRequest` for the `configured` event types (none: the
/// document as written).
pub fn document(configured: &[EventTags]) -> Bytes {
    if configured.is_empty() {
        return Bytes::from_static(DOCUMENT.as_bytes());
    }
    let Ok(mut doc) = serde_json::from_str::<Value>(DOCUMENT) else {
        return Bytes::from_static(DOCUMENT.as_bytes());
    };
    let types: Vec<&str> = configured.iter().map(|e| e.event.as_str()).collect();
    if let Some(Value::Array(branches)) = doc.pointer_mut("/components/schemas/EventRequest/oneOf")
    {
        branches.push(json!({
            "title": "configured in ATLAS_EVENT_TAGS",
            "type": "object",
            "properties": {
                "type": {"enum": types},
                "symbols": {"type": "null"},
                "user_id": {"type": "null"},
            },
            "required": ["type"],
            "additionalProperties": false,
        }));
    }
    Bytes::from(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_event_types_get_a_branch_of_their_own() {
        assert_eq!(document(&[]), DOCUMENT.as_bytes());
        let configured = [EventTags {
            event: "rate_change".to_string(),
            tags: vec!["market:rates".to_string()],
        }];
        let doc: Value = serde_json::from_slice(&document(&configured)).unwrap();
        let branches = doc
            .pointer("/components/schemas/EventRequest/oneOf")
            .and_then(Value::as_array)
            .unwrap();
        assert_eq!(branches.len(), 3);
        assert_eq!(
            branches[2]["properties"]["type"]["enum"],
            json!(["rate_change"])
        );
        assert_eq!(
            branches[0]["properties"]["type"]["const"],
            "market_data_update"
        );
    }
}
