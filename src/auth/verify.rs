//! JWT verification with `jsonwebtoken`: the configured keys (`ATLAS_JWT_SECRET` for HS*,
//! `ATLAS_JWT_PUBLIC_KEY` for RS*/PS* or ES* or EdDSA, `ATLAS_JWKS_FILE` chosen by `kid`),
//! loaded once on the main thread, and the checks of one token. No signature or claim check
//! is written here; this file only chooses the key and names each failure.
//!
//! The key is chosen by the token's `alg` *family*, never the other way round: an HS token
//! is checked only against the shared secret, so an HS token "signed" with a public key
//! (algorithm confusion) finds no secret and is refused (`algorithm_not_allowed`), and `alg:
//! none` is refused before any key is looked at (`alg_none`).
//!
//! 401 codes: `malformed_token` (not three base64url parts, bad JSON), `alg_none`,
//! `algorithm_not_allowed` (no configured key of its family), `unknown_key` (a `kid` the
//! JWK Set does not have), `bad_signature`, `token_expired`, `token_not_yet_valid`,
//! `wrong_issuer`, `wrong_audience`, `invalid_token` (a missing or malformed `sub`/`exp`).
//! Required claims: `sub`, `exp`; `nbf` is checked when present; `roles` (a list of strings)
//! may contain `admin`.

use std::collections::HashMap;
use std::str::FromStr;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Config;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("an Authorization: Bearer token is required")]
    Missing,
    /// Not a JWT, or not a Bearer header.
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    /// `alg: none`.
    #[error("unsigned tokens (alg: none) are refused")]
    AlgNone,
    /// No key of the token's algorithm family is configured.
    #[error("the token's algorithm is not accepted here")]
    AlgorithmNotAllowed,
    /// A `kid` the JWK Set does not have.
    #[error("the token's key id is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not `ATLAS_JWT_ISSUER`.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not contain `ATLAS_JWT_AUDIENCE`.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// Another claim problem (missing `sub` or `exp`, wrong types).
    #[error("the token's claims are invalid: {0}")]
    Invalid(String),
}

impl AuthError {
    /// The error code of the 401 answer.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed => "malformed_token",
            AuthError::AlgNone => "alg_none",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::Invalid(_) => "invalid_token",
        }
    }

    /// The error for a code found before verification (`missing_token`, `malformed_token`).
    pub fn from_code(code: &str) -> AuthError {
        match code {
            "missing_token" => AuthError::Missing,
            _ => AuthError::Malformed,
        }
    }
}

/// The claims Atlas reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Roles; `admin` grants the admin routes and acting for any user.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Claims {
    /// Whether `roles` contains `admin`.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// The configured keys and checks (shared read-only by every shard).
pub struct Verifier {
    secret: Option<DecodingKey>,
    public: Option<(DecodingKey, AlgorithmFamily)>,
    jwks: HashMap<String, (DecodingKey, AlgorithmFamily, Option<Algorithm>)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints key material.
        f.debug_struct("Verifier")
            .field("secret", &self.secret.is_some())
            .field("public", &self.public.as_ref().map(|(_, fam)| fam))
            .field("jwks", &self.jwks.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl Verifier {
    /// Loads the keys `config` names (reading files on the calling thread); `None` when none
    /// is configured. Errors name the setting.
    pub fn load(config: &Config) -> Result<Option<Verifier>, String> {
        let secret = config
            .jwt_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let public = match &config.jwt_public_key {
            None => None,
            Some(v) => {
                let pem = if v.starts_with("-----BEGIN") {
                    v.clone().into_bytes()
                } else {
                    std::fs::read(v)
                        .map_err(|e| format!("ATLAS_JWT_PUBLIC_KEY: cannot read {v}: {e}"))?
                };
                Some(public_key(&pem)?)
            }
        };
        let mut jwks = HashMap::new();
        if let Some(path) = &config.jwks_file {
            let text = std::fs::read(path)
                .map_err(|e| format!("ATLAS_JWKS_FILE: cannot read {}: {e}", path.display()))?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|e| format!("ATLAS_JWKS_FILE: not a JWK Set: {e}"))?;
            for jwk in &set.keys {
                let kid = jwk
                    .common
                    .key_id
                    .clone()
                    .ok_or_else(|| "ATLAS_JWKS_FILE: every key needs a kid".to_string())?;
                let family = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
                    AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
                    AlgorithmParameters::OctetKey(_) => AlgorithmFamily::Hmac,
                    _ => return Err(format!("ATLAS_JWKS_FILE: key {kid}: unsupported type")),
                };
                let alg = jwk
                    .common
                    .key_algorithm
                    .and_then(|a| Algorithm::try_from(a).ok());
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| format!("ATLAS_JWKS_FILE: key {kid}: {e}"))?;
                jwks.insert(kid, (key, family, alg));
            }
        }
        if secret.is_none() && public.is_none() && jwks.is_empty() {
            return Ok(None);
        }
        Ok(Some(Verifier {
            secret,
            public,
            jwks,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            leeway: config.jwt_leeway.as_secs(),
        }))
    }

    /// What the verifier accepts, for the start-up log (no key material).
    pub fn describe(&self) -> String {
        let mut kinds = Vec::new();
        if self.secret.is_some() {
            kinds.push("HS256/384/512 secret".to_string());
        }
        if let Some((_, family)) = &self.public {
            kinds.push(format!("{family:?} public key"));
        }
        if !self.jwks.is_empty() {
            kinds.push(format!("JWK Set of {} keys", self.jwks.len()));
        }
        format!(
            "{}; iss {}; aud {}; leeway {} s",
            kinds.join(", "),
            self.issuer.as_deref().unwrap_or("not checked"),
            self.audience.as_deref().unwrap_or("not checked"),
            self.leeway
        )
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &[u8]) -> Result<Claims, AuthError> {
        let header = header(token)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        let alg = Algorithm::from_str(&header.alg).map_err(|_| AuthError::AlgorithmNotAllowed)?;
        let key = self.key_for(alg, header.kid.as_deref())?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::AlgorithmNotAllowed
                }
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    AuthError::Malformed
                }
                other => AuthError::Invalid(format!("{other:?}")),
            })
    }

    /// The key for a token signed with `alg` (and naming `kid`).
    fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<&DecodingKey, AuthError> {
        let family = alg.family();
        if let Some(kid) = kid.filter(|_| !self.jwks.is_empty()) {
            let (key, key_family, key_alg) = self.jwks.get(kid).ok_or(AuthError::UnknownKey)?;
            if *key_family != family || key_alg.is_some_and(|a| a != alg) {
                return Err(AuthError::AlgorithmNotAllowed);
            }
            return Ok(key);
        }
        match family {
            AlgorithmFamily::Hmac => self.secret.as_ref(),
            _ => self
                .public
                .as_ref()
                .filter(|(_, f)| *f == family)
                .map(|(k, _)| k),
        }
        .ok_or(AuthError::AlgorithmNotAllowed)
    }
}

/// The decoded header of a compact JWT.
fn header(token: &[u8]) -> Result<RawHeader, AuthError> {
    let mut parts = token.split(|b| *b == b'.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)
}

/// An RSA, EC or Ed25519 public key from PEM, and its family.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, AlgorithmFamily), String> {
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((k, AlgorithmFamily::Rsa));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok((k, AlgorithmFamily::Ec));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Ok((k, AlgorithmFamily::Ed));
    }
    Err("ATLAS_JWT_PUBLIC_KEY: not an RSA, EC or Ed25519 public key in PEM".to_string())
}
