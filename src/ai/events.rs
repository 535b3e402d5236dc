//! `POST /ai/events`: domain events turned into invalidations.
//!
//! `market_data_update` names `symbols` (results computed from them go), `user_profile_update`
//! names a `user_id` (that user's results go), and every type configured in
//! `ATLAS_EVENT_TAGS` invalidates its dependency tags. The invalidation then goes the same
//! way as `POST /ai/cache/invalidate` (the handler is the app's, `app::invalidate`).

use serde::Deserialize;

use super::invalidation::{self, Invalidation};
use super::request::{check_user, parse_body};
use crate::config::events::{EventTags, BUILT_IN};
use crate::error::ApiError;
use crate::http::{Request, Status};

/// The body of `POST /ai/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    symbols: Option<Vec<String>>,
    #[serde(default)]
    user_id: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::new(Status::BadRequest, "invalid_request", message)
}

/// The invalidation an event stands for, or a 400 (`unknown_event` naming the known types,
/// `invalid_request` for fields the type does not take or lacks).
fn to_invalidation(body: Body, configured: &[EventTags]) -> Result<Invalidation, ApiError> {
    let kind = body.kind.as_str();
    let refuse = |field: &str| {
        invalid(format!(
            "{field}: not a field of `{}` events",
            crate::error::truncate(kind, 64)
        ))
    };
    match kind {
        "market_data_update" => {
            if body.user_id.is_some() {
                return Err(refuse("user_id"));
            }
            let symbols = body.symbols.unwrap_or_default();
            if symbols.is_empty() {
                return Err(invalid(
                    "symbols: a market_data_update names at least one symbol".into(),
                ));
            }
            invalidation::check_names(&symbols, "symbols")?;
            Ok(Invalidation {
                symbols,
                ..Invalidation::default()
            })
        }
        "user_profile_update" => {
            if body.symbols.is_some() {
                return Err(refuse("symbols"));
            }
            let user = body
                .user_id
                .ok_or_else(|| invalid("user_id: a user_profile_update names a user".into()))?;
            check_user(&user, "user_id")?;
            Ok(Invalidation {
                users: vec![user],
                ..Invalidation::default()
            })
        }
        _ => {
            let Some(event) = configured.iter().find(|e| e.event == kind) else {
                let known: Vec<&str> = BUILT_IN
                    .iter()
                    .copied()
                    .chain(configured.iter().map(|e| e.event.as_str()))
                    .collect();
                return Err(ApiError::new(
                    Status::BadRequest,
                    "unknown_event",
                    format!(
                        "unknown event type `{}`; known: {} (more can be configured in ATLAS_EVENT_TAGS)",
                        crate::error::truncate(kind, 64),
                        known.join(", ")
                    ),
                ));
            };
            if body.symbols.is_some() {
                return Err(refuse("symbols"));
            }
            if body.user_id.is_some() {
                return Err(refuse("user_id"));
            }
            Ok(Invalidation::of_tags(event.tags.clone()))
        }
    }
}

/// Reads the body of `POST /ai/events`: the event's type and the invalidation it means.
pub fn read(
    request: &Request,
    configured: &[EventTags],
) -> Result<(String, Invalidation), ApiError> {
    let body = parse_body::<Body>(request)?;
    let event = body.kind.clone();
    Ok((event, to_invalidation(body, configured)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn event(v: Value) -> Result<Invalidation, ApiError> {
        let configured = crate::config::events::parse("interest_rate_change=market:rates|macro")
            .map_err(invalid)?;
        serde_json::from_value::<Body>(v)
            .map_err(|e| invalid(e.to_string()))
            .and_then(|b| to_invalidation(b, &configured))
    }

    #[test]
    fn events_map_to_invalidations() {
        assert_eq!(
            event(json!({"type": "market_data_update", "symbols": ["AAPL", "MSFT"]})).unwrap(),
            Invalidation {
                symbols: vec!["AAPL".into(), "MSFT".into()],
                ..Invalidation::default()
            }
        );
        assert_eq!(
            event(json!({"type": "user_profile_update", "user_id": "u-1"}))
                .unwrap()
                .users,
            ["u-1"]
        );
        assert_eq!(
            event(json!({"type": "interest_rate_change"})).unwrap(),
            Invalidation::of_tags(vec!["market:rates".into(), "macro".into()])
        );
    }

    #[test]
    fn bad_events_are_refused() {
        let e = event(json!({"type": "solar_flare"})).unwrap_err();
        assert_eq!(e.code, "unknown_event");
        for known in [
            "market_data_update",
            "user_profile_update",
            "interest_rate_change",
        ] {
            assert!(e.message.contains(known), "{}", e.message);
        }
        for (v, mention) in [
            (json!({"type": "market_data_update"}), "symbols"),
            (
                json!({"type": "market_data_update", "symbols": []}),
                "symbols",
            ),
            (
                json!({"type": "market_data_update", "symbols": ["A"], "user_id": "u"}),
                "user_id",
            ),
            (json!({"type": "user_profile_update"}), "user_id"),
            (
                json!({"type": "user_profile_update", "user_id": ""}),
                "user_id",
            ),
            (
                json!({"type": "interest_rate_change", "symbols": ["A"]}),
                "symbols",
            ),
            (json!({"type": "market_data_update", "extra": 1}), "extra"),
            (json!({"symbols": ["A"]}), "type"),
        ] {
            let e = event(v.clone()).unwrap_err();
            assert_eq!(e.code, "invalid_request", "{v}");
            assert!(e.message.contains(mention), "{v}: {}", e.message);
        }
    }
}
