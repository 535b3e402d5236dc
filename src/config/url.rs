//! Plain `http://host:port[/path]` URLs as settings give them (model endpoints, the alert
//! webhook). Only HTTP: TLS to the model tier and to alert receivers terminates in front of
//! them, as in the brief. Parsing only; addresses are resolved on the main thread at start.

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port (required: there is no good default for an internal service).
    pub port: u16,
    /// Request path, `/` when absent.
    pub path: String,
}

impl HttpUrl {
    /// `host:port` as sent in the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `http://host:port[/path]`; with `path_allowed` false only the origin is accepted.
pub fn parse(url: &str, path_allowed: bool) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: URL must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !path_allowed && path != "/" {
        return Err(format!("`{url}`: give the origin only (no path)"));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "`{url}`: the path has spaces or control characters"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p),
        _ => return Err(format!("`{url}`: a port is required")),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("`{url}`: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{url}`: missing host"));
    }
    Ok(HttpUrl {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origins_and_paths() {
        let u = parse("http://127.0.0.1:9000/hooks/atlas", true).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9000, "/hooks/atlas")
        );
        assert_eq!(u.authority(), "127.0.0.1:9000");
        let v6 = parse("http://[::1]:80/", false).unwrap();
        assert_eq!((v6.host.as_str(), v6.path.as_str()), ("::1", "/"));
        assert_eq!(v6.authority(), "[::1]:80");
    }

    #[test]
    fn rejects_what_it_cannot_call() {
        for (bad, path_allowed) in [
            ("https://h:1", true),
            ("http://h", true),
            ("http://h:0", true),
            ("http://:80", true),
            ("http://h:1/x", false),
            ("http://h:1/a b", true),
            ("http://h:99999", true),
        ] {
            assert!(parse(bad, path_allowed).is_err(), "{bad}");
        }
    }
}
