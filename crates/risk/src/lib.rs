//! # portcullis-risk
//!
//! Token-theft and abuse detection for Portcullis: an online statistical model that scores every login,
//! refresh and token use, with its reasons in words.
//!
//! - **The model** (in the spirit of Freeman et al., "Who Are You? A Statistical Approach to Measuring User
//!   Authenticity", NDSS 2016): each subject has a profile of its sessions' networks (IPv4 /24 and /16, IPv6
//!   /48 and /32), user-agent families, clients and hours, in fixed memory. An event scores the likelihood
//!   ratio of its features under the population against under the subject's own history, smoothed towards the
//!   population for new subjects. Within a session (a refresh family, or a token), a second network in use at
//!   the same time as the first counts as a second party.
//! - **Exact signals** beside it: refresh-token reuse, brute force on an account, one source against many
//!   accounts, and a wave of failed logins from new networks across accounts (stuffing from a botnet).
//! - **A simulator** that writes a realistic labelled corpus from a seed, and **an evaluation** (ROC AUC,
//!   true-positive rates at fixed false-positive rates, first flag per campaign).
//!
//! Pure and synchronous: no I/O and no clock (time is the event's). The server feeds it and acts on its
//! scores; profiles are stored as bytes ([`Profile::to_bytes`]) and shared by instances.
//!
//! Non-goals: deep models, raw-history storage, anything needing the token itself (events carry a `jti`).
//!
//! ```
//! use portcullis_risk::{Engine, Event, Weights};
//!
//! let mut engine = Engine::new(Weights::default());
//! let line = r#"{"ts":1764547200,"kind":"login","sub":"alice","client_id":"web","ip":"198.51.100.7","ua":"curl/8"}"#;
//! let assessment = engine.observe(&Event::from_json(line).unwrap());
//! assert!(assessment.score < 0.5); // nothing to go on yet: a new subject is not suspicious by itself
//! ```

#![forbid(unsafe_code)]

mod engine;
mod eval;
mod event;
mod geo;
mod net;
mod policy;
mod profile;
mod reason;
pub mod simulate;
mod sketch;
mod ua;

pub use engine::{Engine, Weights};
pub use eval::{ClassReport, Evaluation, Report, FPRS};
pub use event::{clip_user_agent, fingerprint, Event, EventError, Kind, MAX_FIELD, MAX_USER_AGENT};
pub use geo::{distance_km, GeoIp, GeoIpError, Place};
pub use net::{networks, source, Prefix};
pub use policy::{Action, Policy, SignalName, DEFAULT_SIGNALS};
pub use profile::{Observed, Profile, Seen, Track, SESSION_NETWORKS, TRACKS};
pub use reason::{Assessment, Reason, Signal};
pub use ua::{Agent, Family, Os};
