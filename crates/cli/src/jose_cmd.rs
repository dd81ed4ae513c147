//! `portcullis jwt ...` and `portcullis jwk ...`: the JOSE crate as a command-line tool.

use std::io::{Read, Write as _};
use std::path::PathBuf;

use clap::Subcommand;
use portcullis_jose::{dpop, jwk, jws, jwt, Algorithm, KeySet, Policy, SigningKey, UnixTime};
use zeroize::Zeroizing;

/// The most a command reads from standard input or a key file.
const MAX_INPUT: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum JwtCommand {
    /// Read claims JSON on stdin, print a signed token.
    Sign {
        /// A private JWK file.
        #[arg(long)]
        key: PathBuf,
        /// The `typ` header (e.g. at+jwt).
        #[arg(long)]
        typ: Option<String>,
    },
    /// Verify a token; print its claims and exit 0, or print the reason on stderr and exit 1.
    ///
    /// Without --iss, --aud or --typ that property is not checked. `exp` is always required.
    Verify {
        /// A JWK or JWK Set file with the trusted keys.
        #[arg(long)]
        jwks: PathBuf,
        /// The required issuer.
        #[arg(long)]
        iss: Option<String>,
        /// An accepted audience (repeat for several).
        #[arg(long)]
        aud: Vec<String>,
        /// The required `typ` (e.g. at+jwt).
        #[arg(long)]
        typ: Option<String>,
        /// An allowed algorithm (repeat for several); also binds keys that have no `alg`.
        #[arg(long = "alg")]
        algs: Vec<Algorithm>,
        /// Clock-skew allowance in seconds.
        #[arg(long, default_value_t = 30)]
        leeway: i64,
        /// Judge the token at this Unix time instead of now.
        #[arg(long)]
        now: Option<i64>,
        /// The token; read from stdin when absent.
        token: Option<String>,
    },
    /// Print a token's header and claims WITHOUT verifying anything.
    Inspect {
        /// The token; read from stdin when absent.
        token: Option<String>,
    },
    /// Print a DPoP proof (RFC 9449) for one request, signed by a private JWK: for `curl -H "DPoP: ..."`.
    ///
    /// Each proof has a fresh random `jti` and the current `iat`; servers accept each one once, within a minute.
    Proof {
        /// The private JWK whose key the tokens are bound to (e.g. from `jwk generate --alg ES256`).
        #[arg(long)]
        key: PathBuf,
        /// The request's HTTP method (`htm`).
        #[arg(long)]
        method: String,
        /// The URL the request goes to (`htu`; query and fragment are left out).
        #[arg(long)]
        url: String,
        /// A file holding the access token sent with the request, for its hash (`ath`; resource requests).
        #[arg(long)]
        access_token_file: Option<PathBuf>,
        /// The nonce the server handed out in `DPoP-Nonce`.
        #[arg(long)]
        nonce: Option<String>,
        /// How many proofs to print, one per line (load tests need one per request).
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum JwkCommand {
    /// Print a new private JWK.
    Generate {
        /// The algorithm the key is for.
        #[arg(long)]
        alg: Algorithm,
        /// The key id; the RFC 7638 thumbprint when absent.
        #[arg(long)]
        kid: Option<String>,
    },
    /// Read a private JWK on stdin, print the public JWK.
    Public {
        /// The algorithm, for a key that has no `alg`.
        #[arg(long)]
        alg: Option<Algorithm>,
    },
    /// Read a JWK (public or private) on stdin, print its RFC 7638 SHA-256 thumbprint.
    Thumbprint,
}

fn read_limited(reader: impl Read, what: &str) -> Result<Zeroizing<String>, String> {
    let mut text = Zeroizing::new(String::new());
    reader.take(MAX_INPUT + 1).read_to_string(&mut text).map_err(|e| format!("cannot read {what}: {e}"))?;
    if text.len() as u64 > MAX_INPUT {
        return Err(format!("{what} is larger than {MAX_INPUT} bytes"));
    }
    Ok(text)
}

fn stdin(what: &str) -> Result<Zeroizing<String>, String> {
    read_limited(std::io::stdin().lock(), what)
}

fn file(path: &PathBuf) -> Result<Zeroizing<String>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    read_limited(f, &path.display().to_string())
}

fn token_arg(token: Option<String>) -> Result<String, String> {
    match token {
        Some(t) => Ok(t.trim().to_owned()),
        None => Ok(stdin("token")?.trim().to_owned()),
    }
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

/// Candidates for keys without `alg`: the named ones, or any algorithm when the key type decides alone.
fn candidates(alg: Option<Algorithm>) -> Vec<Algorithm> {
    alg.map(|a| vec![a]).unwrap_or_default()
}

pub fn run_jwt(cmd: JwtCommand) -> Result<(), String> {
    match cmd {
        JwtCommand::Sign { key, typ } => {
            let jwk_text = file(&key)?;
            let key = jwk::signing_key_from_jwk(&jwk_text, &[]).map_err(|e| format!("{}: {e}", key.display()))?;
            let claims = stdin("claims")?;
            let token = jwt::Signer::new(key, typ.as_deref()).sign_json(claims.trim()).map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(())
        }
        JwtCommand::Verify { jwks, iss, aud, typ, algs, leeway, now, token } => {
            let keys = KeySet::from_jwks(&file(&jwks)?, &algs).map_err(|e| format!("{}: {e}", jwks.display()))?;
            for skipped in keys.skipped() {
                eprintln!(
                    "warning: key {} ({}) skipped: {}",
                    skipped.index,
                    skipped.kid.as_deref().unwrap_or("no kid"),
                    skipped.reason
                );
            }
            let mut policy = Policy::builder().leeway(leeway);
            policy = match iss {
                Some(iss) => policy.issuer(iss),
                None => policy.danger_accept_any_issuer(),
            };
            policy = if aud.is_empty() {
                policy.danger_accept_any_audience()
            } else {
                aud.into_iter().fold(policy, |p, a| p.audience(a))
            };
            policy = match typ {
                Some(typ) => policy.typ(typ),
                None => policy.danger_accept_any_typ(),
            };
            if !algs.is_empty() {
                policy = policy.algorithms(&algs);
            }
            let policy = policy.build().map_err(|e| e.to_string())?;
            let now = now.map(UnixTime::from_secs).unwrap_or_else(UnixTime::now);
            let verified = jwt::verify(&token_arg(token)?, &keys, &policy, now).map_err(|e| e.to_string())?;
            println!("{}", pretty(verified.claims.json()));
            Ok(())
        }
        JwtCommand::Proof { key, method, url, access_token_file, nonce, count } => {
            let jwk_text = file(&key)?;
            let key = jwk::signing_key_from_jwk(&jwk_text, &[]).map_err(|e| format!("{}: {e}", key.display()))?;
            if key.algorithm().is_symmetric() {
                return Err("a DPoP proof needs an asymmetric key".into());
            }
            let url = url.split(['?', '#']).next().unwrap_or_default().to_owned();
            dpop::normalize_url(&url).ok_or_else(|| format!("{url:?} is not an absolute http(s) URL"))?;
            let ath = match access_token_file {
                Some(path) => Some(dpop::access_token_hash(file(&path)?.trim())),
                None => None,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for _ in 0..count {
                let jti = portcullis_server::secrets::random_id();
                if jti.is_empty() {
                    return Err("the random number generator failed".into());
                }
                let mut claims = serde_json::json!({
                    "jti": jti, "htm": method, "htu": url, "iat": UnixTime::now().as_secs(),
                });
                if let Some(ath) = &ath {
                    claims["ath"] = ath.clone().into();
                }
                if let Some(nonce) = &nonce {
                    claims["nonce"] = nonce.clone().into();
                }
                let proof = dpop::sign_proof(&key, &claims.to_string()).map_err(|e| e.to_string())?;
                writeln!(out, "{proof}").map_err(|e| e.to_string())?;
            }
            out.flush().map_err(|e| e.to_string())
        }
        JwtCommand::Inspect { token } => {
            let (header, payload) = jws::decode_unverified(&token_arg(token)?, 1 << 20).map_err(|e| e.to_string())?;
            eprintln!("UNVERIFIED: nothing below has been checked; do not trust it.");
            println!("{}", pretty(&header));
            println!("{}", pretty(&String::from_utf8_lossy(&payload)));
            Ok(())
        }
    }
}

pub fn run_jwk(cmd: JwkCommand) -> Result<(), String> {
    match cmd {
        JwkCommand::Generate { alg, kid } => {
            let key = SigningKey::generate(alg).map_err(|e| e.to_string())?;
            let kid = kid.unwrap_or_else(|| key.verifying_key().thumbprint());
            println!("{}", *key.with_kid(kid).to_jwk().map_err(|e| e.to_string())?);
            Ok(())
        }
        JwkCommand::Public { alg } => {
            let text = stdin("JWK")?;
            let key = jwk::verifying_key_from_jwk(&text, &candidates(alg)).map_err(|e| e.to_string())?;
            println!("{}", key.to_jwk().map_err(|e| e.to_string())?);
            Ok(())
        }
        JwkCommand::Thumbprint => {
            println!("{}", jwk::thumbprint(&stdin("JWK")?).map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}
