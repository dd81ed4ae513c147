//! `portcullis risk`: score, evaluate and simulate with the risk engine.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use clap::Subcommand;
use portcullis_server::serve;

use crate::server_cmd::{runtime, settings, Common};
use portcullis_risk::simulate::{geoip, simulate, Scenario};
use portcullis_risk::{Engine, Evaluation, Event, GeoIp, Weights};

#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Score events (JSON lines on stdin), learning as it goes: one JSON line per event with `score` and `reasons`.
    Score {
        /// Read events from this file instead of stdin.
        #[arg(long)]
        input: Option<PathBuf>,
        /// A MaxMind DB file (GeoLite2/GeoIP2 ASN, Country or City): also judge by ASN and country, and flag
        /// impossible travel. Repeat for several (e.g. ASN and City).
        #[arg(long)]
        geoip: Vec<PathBuf>,
    },
    /// Score a labelled corpus and print ROC AUC, true-positive rates at 1 % and 0.1 % false positives per
    /// attack label, and attempts to the first flag per campaign.
    Eval {
        #[arg(long)]
        input: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// MaxMind DB file(s), as for `score`.
        #[arg(long)]
        geoip: Vec<PathBuf>,
    },
    /// Show what the configured store holds about a user's risk profile (by user name, or subject id).
    Show {
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a realistic labelled corpus (JSON lines) from a seed.
    Simulate {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 2000)]
        users: usize,
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Campaigns per attack class, e.g. `token_replay=80,brute_force=5` (others keep the default for the
        /// number of users).
        #[arg(long, default_value = "")]
        mix: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also write the simulated world's GeoIP database (MaxMind DB format: ASN, country, city) here.
        #[arg(long)]
        geoip_out: Option<PathBuf>,
    },
}

pub fn run(common: &Common, cmd: RiskCommand) -> Result<(), String> {
    match cmd {
        RiskCommand::Show { user, json } => runtime()?.block_on(show(common, &user, json)),
        RiskCommand::Score { input, geoip } => score(input, engine(&geoip)?),
        RiskCommand::Eval { input, json, geoip } => eval(input, json, engine(&geoip)?),
        RiskCommand::Simulate { seed, users, days, mix, output, geoip_out } => {
            if users == 0 || days == 0 {
                return Err("--users and --days must be at least 1".into());
            }
            let mut scenario = Scenario::new(seed, users, days);
            scenario.mix.apply(&mix)?;
            if let Some(path) = geoip_out {
                std::fs::write(&path, geoip(&scenario)).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let out: Box<dyn Write> = match output {
                Some(path) => Box::new(File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?),
                None => Box::new(io::stdout().lock()),
            };
            let mut out = BufWriter::new(out);
            for event in simulate(&scenario) {
                serde_json::to_writer(&mut out, &event).map_err(|e| e.to_string())?;
                out.write_all(b"\n").map_err(|e| e.to_string())?;
            }
            out.flush().map_err(|e| e.to_string())
        }
    }
}

fn reader(input: Option<PathBuf>) -> Result<Box<dyn BufRead>, String> {
    Ok(match input {
        Some(path) => Box::new(BufReader::new(File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?)),
        None => Box::new(BufReader::new(io::stdin())),
    })
}

/// Calls `f` with each event; a line that is not an event is reported on stderr and skipped, and makes the
/// command fail at the end.
fn each_event(input: Option<PathBuf>, mut f: impl FnMut(Event) -> Result<(), String>) -> Result<(), String> {
    let mut bad = 0usize;
    for (number, line) in reader(input)?.lines().enumerate() {
        let line = line.map_err(|e| format!("reading events: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_json(&line) {
            Ok(event) => f(event)?,
            Err(e) => {
                bad += 1;
                eprintln!("line {}: {e}", number + 1);
            }
        }
    }
    if bad > 0 {
        return Err(format!("{bad} line(s) were not events"));
    }
    Ok(())
}

/// An engine with the default weights and the given GeoIP databases.
fn engine(geoip: &[PathBuf]) -> Result<Engine, String> {
    let mut geo = GeoIp::default();
    for path in geoip {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        geo.add(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Engine::new(Weights::default()).with_geoip(geo))
}

fn score(input: Option<PathBuf>, mut engine: Engine) -> Result<(), String> {
    let mut out = BufWriter::new(io::stdout().lock());
    each_event(input, |event| {
        let assessment = engine.observe(&event);
        let line = serde_json::json!({
            "ts": event.ts,
            "kind": event.kind.as_str(),
            "sub": event.sub,
            "jti": event.jti,
            "score": (f64::from(assessment.score) * 1e4).round() / 1e4,
            "reasons": assessment.explain(),
        });
        serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())
    })?;
    out.flush().map_err(|e| e.to_string())
}

fn eval(input: Option<PathBuf>, json: bool, mut engine: Engine) -> Result<(), String> {
    let mut evaluation = Evaluation::default();
    each_event(input, |event| {
        let assessment = engine.observe(&event);
        evaluation.record(assessment.score, event.label.as_deref(), event.attack.as_deref());
        Ok(())
    })?;
    let report = evaluation.report().ok_or("the corpus needs both benign and labelled attack events")?;
    if json {
        let classes: Vec<_> = report
            .classes
            .iter()
            .map(|c| {
                serde_json::json!({
                    "label": c.class, "events": c.events, "auc": c.auc,
                    "tpr_at_1pct_fpr": c.tpr[0], "tpr_at_0_1pct_fpr": c.tpr[1],
                    "campaigns": c.campaigns, "campaigns_missed": c.missed_campaigns,
                    "median_first_flag": c.median_first_flag, "worst_first_flag": c.worst_first_flag,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "benign": report.benign, "attack": report.attack, "auc": report.auc,
            "thresholds": report.thresholds, "fpr": report.fpr, "tpr": report.tpr, "labels": classes,
        });
        println!("{doc:#}");
    } else {
        print!("{report}");
    }
    Ok(())
}

async fn show(common: &Common, user: &str, json: bool) -> Result<(), String> {
    let settings = settings(common)?;
    let store = serve::open_store(&settings).await.map_err(|e| e.to_string())?;
    let subject = match store.find_user_by_name(user).await.map_err(|e| e.to_string())? {
        Some(found) => found.id,
        None => user.to_owned(),
    };
    let stored = store.risk_profile(&subject).await.map_err(|e| e.to_string())?;
    let Some(bytes) = stored else { return Err(format!("no risk profile for {user}")) };
    let profile = portcullis_risk::Profile::from_bytes(&bytes).ok_or_else(|| {
        format!("the stored profile of {user} is of another version; it is rebuilt as the user is seen")
    })?;
    let mut summary = profile.summary();
    summary["subject"] = serde_json::Value::String(subject);
    if json {
        println!("{summary:#}");
    } else {
        let known = &summary["known"];
        println!("subject {}: {:.0} sessions seen", summary["subject"].as_str().unwrap_or_default(), profile.sessions);
        println!(
            "known: {} networks in {} blocks, {} agent families ({} user agents), {} clients, {} ASNs, {} countries",
            known["networks"],
            known["blocks"],
            known["agent_families"],
            known["user_agents"],
            known["clients"],
            known["asns"],
            known["countries"]
        );
        let new_network = summary["new_value_rate"]["network"].as_f64().unwrap_or_default() * 100.0;
        let followed = summary["sessions_followed"].as_array().map_or(0, Vec::len);
        println!("a new network in {new_network:.0} % of sessions; sessions followed now: {followed}");
    }
    Ok(())
}
