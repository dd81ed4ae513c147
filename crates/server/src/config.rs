//! The server's configuration: defaults, then a TOML file, then `PORTCULLIS_*` environment variables (each
//! key of the file has one, e.g. `PORTCULLIS_LISTEN`). It is validated once at start, and every problem is
//! reported in one message that names the key, so an operator can fix a config without guessing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use portcullis_jose::Algorithm;
use serde::{Deserialize, Serialize};

use crate::keys::KeyRules;

/// The longest access-token lifetime any configuration may set (DESIGN.md §3: hard cap one hour).
pub const MAX_ACCESS_TOKEN_TTL: u64 = 3600;

/// The configuration keys; each is also read from `PORTCULLIS_` + its upper-case name.
pub const KEYS: [&str; 33] = [
    "listen",
    "issuer",
    "data_dir",
    "database_url",
    "database_max_connections",
    "database_statement_timeout",
    "master_key",
    "master_key_file",
    "log",
    "access_token_ttl",
    "refresh_absolute_ttl",
    "refresh_idle_ttl",
    "signing_alg",
    "key_rotation_interval",
    "jwks_max_age",
    "tls_cert",
    "tls_key",
    "metrics_listen",
    "max_connections",
    "login_rate_per_second",
    "login_rate_burst",
    "trusted_proxies",
    "dpop_proof_max_age",
    "dpop_require_nonce",
    "audit_ledger",
    "audit_head_interval",
    "risk",
    "risk_flag_at",
    "risk_deny_at",
    "risk_revoke_at",
    "risk_signals",
    "risk_webhook",
    "risk_geoip",
];

const ENV_PREFIX: &str = "PORTCULLIS_";

/// Settings as written in the file or the environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// The issuer URL; `http://` only for loopback hosts. Default: `http://` + `listen`.
    pub issuer: Option<String>,
    /// Where the SQLite database and development key file live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Most connections one instance holds to PostgreSQL (SQLite ignores it).
    pub database_max_connections: u32,
    /// Seconds a PostgreSQL statement may run, and a request may wait for a connection, before it fails
    /// with 503 (SQLite ignores it).
    pub database_statement_timeout: u64,
    /// The master key (base64url of 32 bytes) that seals private keys at rest.
    pub master_key: Option<String>,
    /// A file holding the master key, instead of `master_key`.
    pub master_key_file: Option<PathBuf>,
    /// Log filter (`tracing` syntax), e.g. `info,portcullis=debug`.
    pub log: String,
    /// Access-token lifetime in seconds (at most 3600).
    pub access_token_ttl: u64,
    /// A refresh family ends this long after login, used or not (seconds).
    pub refresh_absolute_ttl: u64,
    /// A refresh token unused for this long expires (seconds).
    pub refresh_idle_ttl: u64,
    /// The algorithm of new signing keys (ES256, ES384, EdDSA, RS256..., PS256..., ML-DSA-44/65/87).
    pub signing_alg: String,
    /// How long a signing key signs before its successor takes over (seconds).
    pub key_rotation_interval: u64,
    /// The JWKS `Cache-Control: max-age`, and how long a new key is published before it signs (seconds).
    pub jwks_max_age: u64,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve `/metrics` (with `/healthz` and `/readyz`) on this address, in plain HTTP, instead of on `listen`:
    /// a port for the monitoring network only.
    pub metrics_listen: Option<String>,
    /// The most client connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Password attempts per second allowed from one IP address (0 turns the limit off).
    pub login_rate_per_second: u32,
    /// Password attempts one IP address may make in a burst.
    pub login_rate_burst: u32,
    /// The load balancers and reverse proxies in front of the server, comma-separated addresses or CIDR ranges
    /// (`10.0.0.0/8, 192.0.2.7`). A request from one of them is taken to come from the last `X-Forwarded-For`
    /// entry that is not one of them; empty (the default): every request comes from its connection's address,
    /// and `X-Forwarded-For` is ignored.
    pub trusted_proxies: String,
    /// How old a DPoP proof's `iat` may be at the token endpoint, in seconds (RFC 9449 §11.1); its `jti` is
    /// remembered that long.
    pub dpop_proof_max_age: u64,
    /// Demand a server nonce in DPoP proofs at the token endpoint (RFC 9449 §8): proofs made in advance stop
    /// working, at the cost of one more round trip for a client's first request.
    pub dpop_require_nonce: bool,
    /// Keep the tamper-evident audit ledger: every audit event a leaf of a Merkle tree, with signed heads.
    pub audit_ledger: bool,
    /// How often a new signed tree head is made while the log grows, in seconds.
    pub audit_head_interval: u64,
    /// Score logins, refreshes and guards' token uses with the risk engine, and act on the scores.
    pub risk: bool,
    /// Scores at or above this are flagged (audit event, metric, log line, webhook); unset: no flag band.
    pub risk_flag_at: Option<f64>,
    /// Scores at or above this refuse the login or refresh; unset (the default): no deny band.
    pub risk_deny_at: Option<f64>,
    /// Scores at or above this revoke the session (refresh family); unset (the default): no revoke band.
    pub risk_revoke_at: Option<f64>,
    /// Actions per exact signal, `signal=action,...` (signals: refresh_reuse, shared_session, brute_force,
    /// credential_stuffing; actions: allow, flag, deny, revoke).
    pub risk_signals: String,
    /// A URL that flagged events are POSTed to as JSON (https, or http on a loopback host).
    pub risk_webhook: Option<String>,
    /// MaxMind DB files (GeoLite2/GeoIP2 ASN, Country or City), comma-separated: the risk engine then also
    /// judges by ASN and country and flags impossible travel.
    pub risk_geoip: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            issuer: None,
            data_dir: PathBuf::from("./portcullis-data"),
            database_url: None,
            database_max_connections: 16,
            database_statement_timeout: 5,
            master_key: None,
            master_key_file: None,
            log: "info".into(),
            access_token_ttl: 300,
            refresh_absolute_ttl: 30 * 24 * 3600,
            refresh_idle_ttl: 7 * 24 * 3600,
            signing_alg: crate::DEFAULT_SIGNING_ALGORITHM.name().into(),
            key_rotation_interval: 30 * 24 * 3600,
            jwks_max_age: 300,
            tls_cert: None,
            tls_key: None,
            metrics_listen: None,
            max_connections: 10_000,
            login_rate_per_second: 5,
            login_rate_burst: 20,
            trusted_proxies: String::new(),
            dpop_proof_max_age: 60,
            dpop_require_nonce: false,
            audit_ledger: true,
            audit_head_interval: 60,
            risk: true,
            risk_flag_at: Some(0.8),
            risk_deny_at: None,
            risk_revoke_at: None,
            risk_signals: portcullis_risk::DEFAULT_SIGNALS.into(),
            risk_webhook: None,
            risk_geoip: None,
        }
    }
}

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// Given inline (`PORTCULLIS_MASTER_KEY`).
    Inline(String),
    /// Read from this file.
    File(PathBuf),
    /// Neither was set: development mode creates `data_dir/master.key` (mode 0600) and warns.
    DevelopmentFile(PathBuf),
}

/// A configuration that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub issuer: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_pool: crate::store::PoolOptions,
    pub master_key: MasterKeySource,
    pub log: String,
    pub access_token_ttl: u64,
    pub refresh_absolute_ttl: u64,
    pub refresh_idle_ttl: u64,
    pub signing_alg: Algorithm,
    pub key_rules: KeyRules,
    /// Certificate and key files, when the server speaks HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where `/metrics` is served instead of on `listen`, when set.
    pub metrics_listen: Option<SocketAddr>,
    pub max_connections: usize,
    /// Per-IP password attempts: (per second, burst); `None` when turned off.
    pub login_rate: Option<(u32, u32)>,
    /// The proxies whose `X-Forwarded-For` is believed (`trusted_proxies`).
    pub trusted_proxies: Vec<portcullis_http::forwarded::IpNet>,
    pub dpop_proof_max_age: i64,
    pub dpop_require_nonce: bool,
    /// The audit ledger's head interval in seconds; `None` when the ledger is off.
    pub audit_head_interval: Option<u64>,
    /// The risk engine's actions and webhook; `None` when it is off.
    pub risk: Option<RiskSettings>,
}

/// What the server does with risk scores.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskSettings {
    pub policy: portcullis_risk::Policy,
    pub webhook: Option<String>,
    /// GeoIP database files, read at start.
    pub geoip: Vec<PathBuf>,
}

/// Why the configuration cannot be used: every problem found, one per line, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads defaults, then `file` (if given; it must exist), then the `PORTCULLIS_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(vec![format!("config file {} does not exist", path.display())]));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only the known keys: other tools share the prefix (PORTCULLIS_TEST_*, say). See `unknown_env_vars`.
        figment
            .merge(Env::prefixed(ENV_PREFIX).only(&KEYS))
            .extract()
            .map_err(|e| ConfigError(e.into_iter().map(|e| e.to_string()).collect()))
    }

    /// `PORTCULLIS_*` variables in the environment that are not configuration keys: likely typos, which the
    /// server logs as a warning at start (they are ignored, not fatal, because other tools share the prefix).
    pub fn unknown_env_vars() -> Vec<String> {
        std::env::vars()
            .filter_map(|(name, _)| {
                let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
                (!KEYS.contains(&key.as_str())).then_some(name)
            })
            .collect()
    }

    /// Checks every setting and resolves the defaults that depend on others.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let listen = self.listen.parse::<SocketAddr>().map_err(|_| {
            problems.push(format!("listen: {:?} is not an address such as 127.0.0.1:8080", self.listen));
        });
        let issuer = self.issuer.clone().unwrap_or_else(|| format!("http://{}", self.listen));
        if let Err(why) = check_issuer(&issuer) {
            problems.push(format!("issuer: {why}"));
        }
        let database_url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("portcullis.db").display()));
        if !["sqlite://", "postgres://", "postgresql://"].iter().any(|p| database_url.starts_with(p)) {
            problems.push("database_url: must start with sqlite:// or postgres://".into());
        }
        if !(2..=1000).contains(&self.database_max_connections) {
            problems.push("database_max_connections: must be between 2 and 1000".into());
        }
        if !(1..=600).contains(&self.database_statement_timeout) {
            problems.push("database_statement_timeout: must be between 1 and 600 seconds".into());
        }
        let database_pool = crate::store::PoolOptions {
            max_connections: self.database_max_connections,
            statement_timeout: self.database_statement_timeout,
        };
        let master_key = match (&self.master_key, &self.master_key_file) {
            (Some(_), Some(_)) => {
                problems.push("master_key and master_key_file: set one, not both".into());
                None
            }
            (Some(key), None) => Some(MasterKeySource::Inline(key.clone())),
            (None, Some(file)) => Some(MasterKeySource::File(file.clone())),
            (None, None) => Some(MasterKeySource::DevelopmentFile(self.data_dir.join("master.key"))),
        };
        if self.access_token_ttl == 0 || self.access_token_ttl > MAX_ACCESS_TOKEN_TTL {
            problems.push(format!("access_token_ttl: must be between 1 and {MAX_ACCESS_TOKEN_TTL} seconds"));
        }
        if self.refresh_idle_ttl == 0 || self.refresh_idle_ttl > self.refresh_absolute_ttl {
            problems.push("refresh_idle_ttl: must be positive and not longer than refresh_absolute_ttl".into());
        }
        let signing_alg = match Algorithm::from_name(&self.signing_alg) {
            Ok(alg) if !alg.is_symmetric() => Some(alg),
            _ => {
                problems.push(format!(
                    "signing_alg: {:?} is not an asymmetric JOSE algorithm (ES256, ES384, ES512, EdDSA, RS256, PS256, \
                     ML-DSA-65, ...)",
                    self.signing_alg
                ));
                None
            }
        };
        let key_rules = KeyRules {
            rotation_interval: self.key_rotation_interval.min(i64::MAX as u64) as i64,
            jwks_max_age: self.jwks_max_age.min(i64::MAX as u64) as i64,
            max_token_ttl: MAX_ACCESS_TOKEN_TTL as i64,
        };
        if let Err(why) = key_rules.checked() {
            problems.push(format!("key_rotation_interval / jwks_max_age: {why}"));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                problems.push("tls_cert and tls_key: set both, or neither".into());
                None
            }
        };
        let metrics_listen = match self.metrics_listen.as_deref().map(str::parse::<SocketAddr>) {
            None => None,
            Some(Ok(addr)) if listen.as_ref().is_ok_and(|l| *l == addr && addr.port() != 0) => {
                problems.push("metrics_listen: must differ from listen".into());
                None
            }
            Some(Ok(addr)) => Some(addr),
            Some(Err(_)) => {
                problems.push(format!(
                    "metrics_listen: {:?} is not an address such as 127.0.0.1:9090",
                    self.metrics_listen.as_deref().unwrap_or_default()
                ));
                None
            }
        };
        if self.max_connections == 0 {
            problems.push("max_connections: must be at least 1".into());
        }
        if !(5..=300).contains(&self.dpop_proof_max_age) {
            problems.push("dpop_proof_max_age: must be between 5 and 300 seconds".into());
        }
        if !(1..=86_400).contains(&self.audit_head_interval) {
            problems.push("audit_head_interval: must be between 1 and 86400 seconds".into());
        }
        let risk = self.risk_settings(&mut problems);
        let login_rate = (self.login_rate_per_second > 0)
            .then_some((self.login_rate_per_second, self.login_rate_burst.max(self.login_rate_per_second)));
        let trusted_proxies = portcullis_http::forwarded::parse_networks(&self.trusted_proxies)
            .map_err(|bad| problems.push(format!("trusted_proxies: {bad:?} is not an address or a CIDR range")))
            .unwrap_or_default();
        match (listen, master_key, signing_alg) {
            (Ok(listen), Some(master_key), Some(signing_alg)) if problems.is_empty() => Ok(Settings {
                listen,
                issuer: issuer.trim_end_matches('/').to_owned(),
                data_dir: self.data_dir,
                database_url,
                database_pool,
                master_key,
                log: self.log,
                access_token_ttl: self.access_token_ttl,
                refresh_absolute_ttl: self.refresh_absolute_ttl,
                refresh_idle_ttl: self.refresh_idle_ttl,
                signing_alg,
                key_rules,
                tls,
                metrics_listen,
                max_connections: self.max_connections,
                login_rate,
                trusted_proxies,
                dpop_proof_max_age: self.dpop_proof_max_age as i64,
                dpop_require_nonce: self.dpop_require_nonce,
                audit_head_interval: self.audit_ledger.then_some(self.audit_head_interval),
                risk,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

impl Config {
    fn risk_settings(&self, problems: &mut Vec<String>) -> Option<RiskSettings> {
        let mut band = |key: &str, value: Option<f64>| match value {
            Some(v) if (0.0..=1.0).contains(&v) => Some(v as f32),
            Some(_) => {
                problems.push(format!("{key}: must be a score between 0 and 1"));
                None
            }
            None => None,
        };
        let flag_at = band("risk_flag_at", self.risk_flag_at);
        let deny_at = band("risk_deny_at", self.risk_deny_at);
        let revoke_at = band("risk_revoke_at", self.risk_revoke_at);
        let signals = portcullis_risk::Policy::parse_signals(&self.risk_signals)
            .map_err(|why| problems.push(format!("risk_signals: {why}")))
            .unwrap_or_default();
        if let Some(url) = &self.risk_webhook {
            if let Err(why) = check_issuer(url) {
                problems.push(format!("risk_webhook: {why}"));
            }
        }
        let geoip: Vec<PathBuf> = self
            .risk_geoip
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        for path in &geoip {
            if !path.is_file() {
                problems.push(format!("risk_geoip: {} is not a file", path.display()));
            }
        }
        let policy = portcullis_risk::Policy { flag_at, deny_at, revoke_at, signals };
        self.risk.then(|| RiskSettings { policy, webhook: self.risk_webhook.clone(), geoip })
    }
}

/// RFC 8414 §2: an `https` URL with no query or fragment. Plain `http` is accepted for loopback hosts only,
/// for development.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let (scheme, rest) = issuer.split_once("://").ok_or_else(|| format!("{issuer:?} is not an absolute URL"))?;
    if issuer.contains(['?', '#']) || issuer.chars().any(char::is_whitespace) {
        return Err("must not contain a query, a fragment or spaces".into());
    }
    let host = rest.split('/').next().unwrap_or_default();
    let host_only = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if host_only.is_empty() {
        return Err("has no host".into());
    }
    match scheme {
        "https" => Ok(()),
        "http" if ["127.0.0.1", "localhost", "::1"].contains(&host_only) => Ok(()),
        "http" => Err("plain http is allowed only for a loopback host; use https".into()),
        _ => Err(format!("scheme {scheme:?} is not https")),
    }
}

#[cfg(test)]
// figment::Jail fixes the closure's error type (figment::Error, a large enum); the lint cannot apply.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_development_setup() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://./portcullis-data/portcullis.db");
        assert_eq!(s.master_key, MasterKeySource::DevelopmentFile(PathBuf::from("./portcullis-data/master.key")));
        assert_eq!(s.access_token_ttl, 300);
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "listen = \"0.0.0.0:9000\"\nissuer = \"https://auth.example/\"\naccess_token_ttl = 120\n",
            )?;
            jail.set_env("PORTCULLIS_ACCESS_TOKEN_TTL", "60");
            jail.set_env("PORTCULLIS_DATABASE_URL", "postgres://db/portcullis");
            jail.set_env("PORTCULLIS_LISTN", "typo");
            let s = Config::load(Some(Path::new("p.toml"))).unwrap().validate().unwrap();
            assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
            assert_eq!(s.issuer, "https://auth.example");
            assert_eq!(s.access_token_ttl, 60, "the environment wins over the file");
            assert_eq!(s.database_url, "postgres://db/portcullis");
            // An unknown PORTCULLIS_ variable is ignored, and reported for a warning.
            assert!(Config::unknown_env_vars().contains(&"PORTCULLIS_LISTN".to_owned()));
            assert!(!Config::unknown_env_vars().contains(&"PORTCULLIS_DATABASE_URL".to_owned()));
            Ok(())
        });
    }

    #[test]
    fn mistakes_are_reported_together_and_by_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "lisen = \"127.0.0.1:1\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml"))).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");
            assert!(Config::load(Some(Path::new("missing.toml"))).unwrap_err().to_string().contains("does not exist"));
            jail.create_file("bad.toml", "access_token_ttl = \"soon\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml"))).is_err());
            Ok(())
        });
        let bad = Config {
            listen: "nowhere".into(),
            issuer: Some("http://auth.example".into()),
            database_url: Some("mysql://x".into()),
            database_max_connections: 1,
            master_key: Some("k".into()),
            master_key_file: Some("f".into()),
            access_token_ttl: 7200,
            refresh_idle_ttl: 10,
            refresh_absolute_ttl: 5,
            signing_alg: "HS256".into(),
            jwks_max_age: 600,
            key_rotation_interval: 900,
            tls_cert: Some("cert.pem".into()),
            metrics_listen: Some("everywhere".into()),
            max_connections: 0,
            dpop_proof_max_age: 3600,
            risk_flag_at: Some(1.5),
            risk_signals: "brute_force=ban".into(),
            risk_webhook: Some("http://hooks.example/x".into()),
            risk_geoip: Some("GeoLite2-ASN.mmdb, ".into()),
            ..Config::default()
        };
        let ConfigError(problems) = bad.validate().unwrap_err();
        assert_eq!(problems.len(), 17, "{problems:#?}");
        for key in [
            "listen",
            "issuer",
            "database_url",
            "database_max_connections",
            "master_key",
            "access_token_ttl",
            "refresh_idle_ttl",
            "signing_alg",
            "key_rotation_interval",
            "tls_cert",
            "metrics_listen",
            "max_connections",
            "dpop_proof_max_age",
            "risk_flag_at",
            "risk_signals",
            "risk_webhook",
            "risk_geoip",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{key}: {problems:#?}");
        }
    }

    #[test]
    fn a_bad_trusted_proxy_is_an_error_naming_the_key() {
        let config = Config { trusted_proxies: "10.0.0.0/8, nope".into(), ..Config::default() };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("trusted_proxies: \"nope\" is not an address or a CIDR range"), "{err}");
    }

    #[test]
    fn issuers_follow_rfc_8414() {
        for ok in ["https://auth.example", "https://auth.example/tenant", "http://localhost:8080", "http://[::1]:80"] {
            assert!(check_issuer(ok).is_ok(), "{ok}");
        }
        for bad in ["auth.example", "https://auth.example?x=1", "https://a#f", "http://10.0.0.1", "ftp://a", "https://"]
        {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }
}
