//! `ATLAS_EVENT_TAGS`: the event types `POST /ai/events` accepts besides the built-in ones, each
//! with the dependency tags it invalidates, as `type=tag|tag,type2=tag`.
//!
//! Parsed and validated with the rest of the configuration. Must not depend on the runtime.

/// Event types with their own meaning (they name symbols or a user in the event body);
/// `ATLAS_EVENT_TAGS` cannot redefine them.
pub const BUILT_IN: [&str; 2] = ["market_data_update", "user_profile_update"];

/// Longest event type name.
const MAX_TYPE_LEN: usize = 64;
/// Longest tag (as in a request's `dependencies`).
const MAX_TAG_LEN: usize = 256;

/// One configured event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTags {
    /// The event's `type`, as clients send it.
    pub event: String,
    /// The dependency tags an event of this type invalidates.
    pub tags: Vec<String>,
}

/// Parses the `ATLAS_EVENT_TAGS` value (empty: only the built-in event types).
pub fn parse(value: &str) -> Result<Vec<EventTags>, String> {
    let mut out: Vec<EventTags> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (event, tags) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}`: expected type=tag|tag"))?;
        let event = event.trim();
        if event.is_empty()
            || event.len() > MAX_TYPE_LEN
            || !event
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "`{event}`: event types are 1-{MAX_TYPE_LEN} of [A-Za-z0-9._-]"
            ));
        }
        if BUILT_IN.contains(&event) || out.iter().any(|e| e.event == event) {
            return Err(format!("`{event}`: duplicate or built-in event type"));
        }
        let tags: Vec<String> = tags
            .split('|')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if tags.is_empty() {
            return Err(format!("`{event}`: names no tag"));
        }
        if let Some(bad) = tags
            .iter()
            .find(|t| t.len() > MAX_TAG_LEN || t.chars().any(char::is_control))
        {
            return Err(format!(
                "`{event}`: tag `{bad}` must be at most {MAX_TAG_LEN} characters without control characters"
            ));
        }
        out.push(EventTags {
            event: event.to_string(),
            tags,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_and_tags() {
        let e = parse(" interest_rate_change = market:rates | macro ,tax_update=tax,").unwrap();
        assert_eq!(
            e,
            vec![
                EventTags {
                    event: "interest_rate_change".into(),
                    tags: vec!["market:rates".into(), "macro".into()],
                },
                EventTags {
                    event: "tax_update".into(),
                    tags: vec!["tax".into()],
                },
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "no_equals",
            "=tag",
            "bad type=tag",
            "a=",
            "a=|",
            "a=x,a=y",
            "market_data_update=x",
            "user_profile_update=x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&format!("a={}", "t".repeat(257))).is_err());
    }
}
