//! Authentication and authorisation: who a request is, and whether it may do what it asks.
//!
//! Layout: `verify` (the keys and the JWT checks, built on the main thread at start and shared
//! read-only by every shard), `cache` (each shard's verified-token cache), this file (the
//! per-request decision, the identity handed to handlers, security events and counters).
//!
//! Per request ([`authenticate`]), before the handler runs and after the body is read:
//! - a public route (liveness, readiness, the API description, `/health/detailed`,
//!   `/metrics`, the model tier's protocol) needs nothing;
//! - otherwise, with auth off, the request is [`Identity::Open`];
//! - with auth required: `Authorization: Bearer <token>` is required (401 `missing_token`,
//!   with `WWW-Authenticate`); the token is `ATLAS_ADMIN_TOKEN` (compared in constant time: an
//!   admin) or a JWT, looked up in the shard's cache by its exact bytes, else verified (see
//!   `verify` for each 401 code) and cached until its expiry or [`cache::MAX_AGE`];
//! - an admin route needs the admin role (`roles` claim containing `admin`) or the admin
//!   token (403 `admin_required`); a user route then checks, in its handler, that the user it
//!   names is the token's `sub` unless the caller is an admin ([`Identity::may_act_for`],
//!   403 `user_mismatch`).
//!
//! Every refusal and every admin action is a security event: one structured line on stderr
//! (`target: atlas::security`; never a token or secret) and a counter.

pub mod cache;
pub mod verify;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::ApiError;
use crate::http::{Request, Response, Status};
use cache::TokenCache;
use verify::{AuthError, Verifier};

/// Who may call a route (the app's routes give each route its access; `authenticate` enforces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness, the API description; and, for now, the operator views
    /// `/health/detailed` and `/metrics` and the model tier's protocol, which are kept off
    /// public networks instead.
    Public,
    /// The user the request names (in its body or path), or an admin.
    User,
    /// Admins only: whole-cache operations and the performance document.
    Admin,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Authentication is off (or the route is public): anyone, acting for any user.
    Open,
    /// A verified token's subject.
    User {
        /// The `sub` claim.
        sub: Rc<str>,
        /// Whether `roles` contains `admin`.
        admin: bool,
    },
    /// The static `ATLAS_ADMIN_TOKEN`.
    AdminToken,
}

impl Identity {
    /// Whether this caller may act for `user` (read, compute, change its results or context).
    pub fn may_act_for(&self, user: &str) -> bool {
        match self {
            Identity::Open | Identity::AdminToken => true,
            Identity::User { sub, admin } => *admin || &**sub == user,
        }
    }

    /// 403 `user_mismatch` unless this caller may act for `user`.
    pub fn check_user(&self, user: &str) -> Result<(), ApiError> {
        if self.may_act_for(user) {
            Ok(())
        } else {
            Err(ApiError::new(
                Status::Forbidden,
                "user_mismatch",
                "the token's subject may only act for itself (an admin may act for anyone)",
            ))
        }
    }

    fn is_admin(&self) -> bool {
        matches!(
            self,
            Identity::AdminToken | Identity::User { admin: true, .. }
        )
    }

    /// How the caller appears in security events (the subject, never a token).
    fn label(&self) -> &str {
        match self {
            Identity::Open => "-",
            Identity::User { sub, .. } => sub,
            Identity::AdminToken => "admin-token",
        }
    }
}

/// The caller of a handler: its identity and address.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Who is asking.
    pub identity: &'a Identity,
    /// From where.
    pub peer: Option<IpAddr>,
}

impl Caller<'_> {
    /// 403 `user_mismatch` (counted and logged) unless the caller may act for `user`.
    pub fn check_user(&self, auth: &Auth, user: &str) -> Result<(), ApiError> {
        self.identity.check_user(user).inspect_err(|_| {
            auth.forbidden(self.identity, user, self.peer);
        })
    }
}

/// Refusal codes counted per shard, in a fixed order.
pub const CODES: [&str; 12] = [
    "missing_token",
    "malformed_token",
    "alg_none",
    "algorithm_not_allowed",
    "unknown_key",
    "bad_signature",
    "token_expired",
    "token_not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "invalid_token",
    "admin_required",
];

/// Most distinct addresses whose failures one shard counts (past it, failures still count
/// in the totals).
const MAX_ADDRS: usize = 4096;

/// One shard's authentication state.
pub struct Auth {
    verifier: Option<Arc<Verifier>>,
    admin_token: Option<Box<[u8]>>,
    cache: RefCell<TokenCache>,
    counters: AuthCounters,
}

/// Plain per-shard counters.
#[derive(Debug, Default)]
struct AuthCounters {
    cache_hits: Cell<u64>,
    cache_misses: Cell<u64>,
    refused: [Cell<u64>; CODES.len()],
    forbidden: Cell<u64>,
    admin_actions: Cell<u64>,
    by_addr: RefCell<HashMap<IpAddr, u64>>,
}

/// A copy of one shard's authentication figures (`Send`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthFigures {
    /// Verified-token cache hits and misses (misses ran a full verification).
    pub cache_hits: u64,
    /// See `cache_hits`.
    pub cache_misses: u64,
    /// Refusals (401 and 403 `admin_required`) by [`CODES`] index.
    pub refused: [u64; CODES.len()],
    /// 403 `user_mismatch`.
    pub forbidden: u64,
    /// Requests to admin routes that were allowed.
    pub admin_actions: u64,
    /// Refusals by client address (bounded).
    pub by_addr: Vec<(IpAddr, u64)>,
}

impl AuthFigures {
    /// Adds another shard's figures.
    pub fn merge(&mut self, o: &AuthFigures) {
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        for (a, b) in self.refused.iter_mut().zip(o.refused) {
            *a += b;
        }
        self.forbidden += o.forbidden;
        self.admin_actions += o.admin_actions;
        for (addr, n) in &o.by_addr {
            match self.by_addr.iter_mut().find(|(a, _)| a == addr) {
                Some(e) => e.1 += n,
                None => self.by_addr.push((*addr, *n)),
            }
        }
    }
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().saturating_add(1));
}

impl Auth {
    /// A shard's state: `verifier` `None` means auth is off; up to `cache_entries` verified
    /// tokens are kept.
    pub fn new(
        verifier: Option<Arc<Verifier>>,
        admin_token: Option<&str>,
        cache_entries: usize,
    ) -> Auth {
        Auth {
            verifier,
            admin_token: admin_token.map(|t| t.as_bytes().into()),
            cache: RefCell::new(TokenCache::with_capacity(cache_entries)),
            counters: AuthCounters::default(),
        }
    }

    /// Whether requests are authenticated.
    pub fn required(&self) -> bool {
        self.verifier.is_some()
    }

    /// A copy of the counters.
    pub fn figures(&self) -> AuthFigures {
        let c = &self.counters;
        AuthFigures {
            cache_hits: c.cache_hits.get(),
            cache_misses: c.cache_misses.get(),
            refused: c.refused.each_ref().map(Cell::get),
            forbidden: c.forbidden.get(),
            admin_actions: c.admin_actions.get(),
            by_addr: c.by_addr.borrow().iter().map(|(a, n)| (*a, *n)).collect(),
        }
    }

    /// Counts a 403 `user_mismatch` and logs it.
    pub fn forbidden(&self, identity: &Identity, user: &str, peer: Option<IpAddr>) {
        bump(&self.counters.forbidden);
        log::warn!(
            target: "atlas::security",
            "event=forbidden code=user_mismatch subject={:?} user={:?} peer={}",
            identity.label(),
            crate::error::truncate(user, 64),
            peer.map_or("-".to_string(), |p| p.to_string()),
        );
    }

    fn refuse(&self, code: &'static str, route: &str, peer: Option<IpAddr>) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            bump(&self.counters.refused[i]);
        }
        if let Some(addr) = peer {
            let mut by = self.counters.by_addr.borrow_mut();
            if by.len() < MAX_ADDRS || by.contains_key(&addr) {
                *by.entry(addr).or_default() += 1;
            }
        }
        log::warn!(
            target: "atlas::security",
            "event=auth_refused code={code} route={route} peer={}",
            peer.map_or("-".to_string(), |p| p.to_string()),
        );
    }

    /// 403 `admin_required` (counted and logged as a refusal) unless `identity` may use the
    /// admin operations; an allowed admin action is counted and logged. For the admin fields
    /// of `/graphql`, which is a user route: the same rule as the admin routes.
    pub fn check_admin(
        &self,
        identity: &Identity,
        route: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        if self.verifier.is_none() {
            return Ok(());
        }
        if !identity.is_admin() {
            self.refuse("admin_required", route, peer);
            return Err(ApiError::new(
                Status::Forbidden,
                "admin_required",
                "this field needs the admin role or ATLAS_ADMIN_TOKEN",
            ));
        }
        bump(&self.counters.admin_actions);
        log::info!(
            target: "atlas::security",
            "event=admin_action route={route} subject={:?} peer={}",
            identity.label(),
            peer.map_or("-".to_string(), |p| p.to_string()),
        );
        Ok(())
    }

    /// Who `request` is, for a route of `access`, or the response refusing it.
    pub fn authenticate(
        &self,
        access: Access,
        request: &Request,
        peer: Option<IpAddr>,
    ) -> Result<Identity, Response> {
        let Some(verifier) = self.verifier.as_deref() else {
            return Ok(Identity::Open);
        };
        if access == Access::Public {
            return Ok(Identity::Open);
        }
        let path = request.path();
        let identity = match bearer(request) {
            Err(code) => {
                self.refuse(code, path, peer);
                return Err(unauthorized(AuthError::from_code(code)));
            }
            Ok(token) if self.is_admin_token(token) => Identity::AdminToken,
            Ok(token) => match self.user(verifier, token) {
                Ok(identity) => identity,
                Err(e) => {
                    self.refuse(e.code(), path, peer);
                    return Err(unauthorized(e));
                }
            },
        };
        if access == Access::Admin {
            if !identity.is_admin() {
                self.refuse("admin_required", path, peer);
                return Err(ApiError::new(
                    Status::Forbidden,
                    "admin_required",
                    "this route needs the admin role or ATLAS_ADMIN_TOKEN",
                )
                .to_response());
            }
            bump(&self.counters.admin_actions);
            log::info!(
                target: "atlas::security",
                "event=admin_action route={path} subject={:?} peer={}",
                identity.label(),
                peer.map_or("-".to_string(), |p| p.to_string()),
            );
        }
        Ok(identity)
    }

    fn is_admin_token(&self, token: &[u8]) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t, token))
    }

    /// The identity of a JWT: from the cache, or verified and cached.
    fn user(&self, verifier: &Verifier, token: &[u8]) -> Result<Identity, AuthError> {
        let now = crate::wallclock::unix_ms_now() / 1000;
        if let Some(hit) = self.cache.borrow_mut().get(token, now) {
            bump(&self.counters.cache_hits);
            return Ok(hit);
        }
        bump(&self.counters.cache_misses);
        let claims = verifier.verify(token)?;
        let identity = Identity::User {
            sub: claims.sub.as_str().into(),
            admin: claims.is_admin(),
        };
        self.cache
            .borrow_mut()
            .insert(token, identity.clone(), claims.exp, now);
        Ok(identity)
    }
}

/// The token of `Authorization: Bearer <token>`, or the refusal code.
fn bearer(request: &Request) -> Result<&[u8], &'static str> {
    let value = request.header("authorization").ok_or("missing_token")?;
    let value = trim(value);
    let scheme_len = 6;
    match value.get(..scheme_len) {
        Some(s) if s.eq_ignore_ascii_case(b"bearer") && value.get(scheme_len) == Some(&b' ') => {
            let token = trim(&value[scheme_len + 1..]);
            if token.is_empty() {
                Err("malformed_token")
            } else {
                Ok(token)
            }
        }
        _ => Err("malformed_token"),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| *c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|c| *c != b' ').map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Equal lengths and bytes, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 401 with `WWW-Authenticate` (RFC 6750): `error="invalid_token"` unless no token was sent.
fn unauthorized(e: AuthError) -> Response {
    let code = e.code();
    let challenge = if code == "missing_token" {
        "Bearer realm=\"atlas\"".to_string()
    } else {
        format!("Bearer realm=\"atlas\", error=\"invalid_token\", error_description=\"{code}\"")
    };
    ApiError::new(Status::Unauthorized, code, e.to_string())
        .to_response()
        .header("WWW-Authenticate", challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn users_act_for_themselves_admins_for_anyone() {
        let u = Identity::User {
            sub: "alice".into(),
            admin: false,
        };
        assert!(u.may_act_for("alice") && !u.may_act_for("bob"));
        assert_eq!(u.check_user("bob").unwrap_err().code, "user_mismatch");
        let a = Identity::User {
            sub: "ops".into(),
            admin: true,
        };
        assert!(a.may_act_for("bob") && Identity::AdminToken.may_act_for("bob"));
        assert!(Identity::Open.may_act_for("anyone"));
    }

    #[test]
    fn trims_spaces_around_the_token() {
        assert_eq!(trim(b"  x y  "), b"x y");
        assert_eq!(trim(b"   "), b"");
    }
}
