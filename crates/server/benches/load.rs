//! Load benchmark of the authorization server over HTTP, on this machine, with the load generator in the
//! same process on its own runtime (both share the machine's cores, as a same-host load generator does).
//!
//! `cargo bench -p portcullis-server --bench load -- [--seconds N] [--concurrency C] [--database-url URL]
//! [--instances N] [--pool CONNECTIONS] [--rounds R] [--only cc,refresh,introspect,login]`
//!
//! Reports client_credentials tokens/s, refresh rotations/s, introspections/s and password logins/s with p50
//! and p99 latency, the login rate as a fraction of the Argon2id ceiling (cores ÷ one hash's time), and the
//! token endpoint's p99 while a login flood saturates the password pool.
//!
//! By default the server runs on a temporary SQLite database. With `--database-url postgres://...` it runs on
//! a fresh database created on that PostgreSQL server, and `--instances N` starts N servers on it (sharing
//! one master key), each client talking to one of them in turn. With `--instances N --rounds R` each scenario
//! runs R rounds alternating between all clients on the first instance and clients spread over all N, and
//! prints the medians: a fair one-against-N comparison on a host whose speed drifts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_server::admin::{Admin, ClientKind, NewClient};
use portcullis_server::clock::SystemClock;
use portcullis_server::config::Config;
use portcullis_server::model::GrantType;
use portcullis_server::secrets::{hash_password, PasswordCost};
use portcullis_server::serve;
use support::{arg, arg_text, post_form, report, run, timed_loop, Sample};
use zeroize::Zeroizing;

struct Setup {
    bases: Vec<String>,
    svc_secret: String,
    web_secret: String,
}

impl Setup {
    /// The URL of `path` at the instance client `i` talks to, when the clients are spread over the first
    /// `spread` instances.
    fn url(&self, i: u64, spread: usize, path: &str) -> String {
        format!("{}{path}", self.bases[i as usize % spread.clamp(1, self.bases.len())])
    }
}

/// One load scenario's parameters: the clients, where they go, and for how long.
struct Load {
    http: reqwest::Client,
    setup: Arc<Setup>,
    concurrency: u64,
    duration: Duration,
}

impl Load {
    async fn client_credentials(&self, spread: usize) -> (Sample, Duration) {
        self.client_credentials_until(self.concurrency, spread, Instant::now() + self.duration).await
    }

    async fn client_credentials_until(&self, clients: u64, spread: usize, deadline: Instant) -> (Sample, Duration) {
        run(clients, |i| {
            let (http, setup) = (self.http.clone(), Arc::clone(&self.setup));
            let url = setup.url(i, spread, "/oauth2/token");
            timed_loop(deadline, move || {
                let (http, url, setup) = (http.clone(), url.clone(), Arc::clone(&setup));
                Box::pin(async move {
                    post_form(&http, &url, ("svc", &setup.svc_secret), &[("grant_type", "client_credentials")])
                        .await
                        .is_some()
                })
            })
        })
        .await
    }

    /// Each client rotates its own chain, taken from `chains` and put back, advanced, at the end.
    async fn refresh(&self, spread: usize, chains: &Arc<std::sync::Mutex<Vec<String>>>) -> (Sample, Duration) {
        let deadline = Instant::now() + self.duration;
        let tokens: Vec<_> = (0..self.concurrency)
            .map(|_| Arc::new(std::sync::Mutex::new(chains.lock().unwrap().pop().unwrap())))
            .collect();
        let result = run(self.concurrency, |i| {
            let (http, setup) = (self.http.clone(), Arc::clone(&self.setup));
            let url = setup.url(i, spread, "/oauth2/token");
            let token = Arc::clone(&tokens[i as usize]);
            timed_loop(deadline, move || {
                let (http, url, setup, token) = (http.clone(), url.clone(), Arc::clone(&setup), Arc::clone(&token));
                Box::pin(async move {
                    let current = token.lock().unwrap().clone();
                    let form = [("grant_type", "refresh_token"), ("refresh_token", current.as_str())];
                    match post_form(&http, &url, ("web", &setup.web_secret), &form).await {
                        Some(body) => {
                            *token.lock().unwrap() = body["refresh_token"].as_str().unwrap_or_default().to_owned();
                            true
                        }
                        None => false,
                    }
                })
            })
        })
        .await;
        chains.lock().unwrap().extend(tokens.iter().map(|t| t.lock().unwrap().clone()));
        result
    }

    /// A resource server introspecting one access token over and over.
    async fn introspect(&self, spread: usize, at: &str) -> (Sample, Duration) {
        let deadline = Instant::now() + self.duration;
        run(self.concurrency, |i| {
            let (http, setup, at) = (self.http.clone(), Arc::clone(&self.setup), at.to_owned());
            let url = setup.url(i, spread, "/oauth2/introspect");
            timed_loop(deadline, move || {
                let (http, url, setup, at) = (http.clone(), url.clone(), Arc::clone(&setup), at.clone());
                Box::pin(async move {
                    let body = post_form(&http, &url, ("svc", &setup.svc_secret), &[("token", at.as_str())]).await;
                    body.is_some_and(|b| b["active"] == true)
                })
            })
        })
        .await
    }
}

async fn setup(admin: &Admin, bases: Vec<String>) -> Setup {
    admin.add_role("staff", &["read write".into()]).await.unwrap();
    admin.add_user("bench", Zeroizing::new("bench password".into()), &["staff".into()]).await.unwrap();
    let (_, svc) = admin
        .add_client(NewClient {
            id: "svc".into(),
            credential: ClientKind::GenerateSecret,
            grants: vec![GrantType::ClientCredentials],
            scopes: vec!["read write".into()],
            audiences: vec!["api".into()],
            ..NewClient::default()
        })
        .await
        .unwrap();
    let (_, web) = admin
        .add_client(NewClient {
            id: "web".into(),
            credential: ClientKind::GenerateSecret,
            grants: vec![GrantType::Password, GrantType::RefreshToken],
            scopes: vec!["read write".into()],
            audiences: vec!["api".into()],
            first_party: true,
            ..NewClient::default()
        })
        .await
        .unwrap();
    Setup { bases, svc_secret: svc.unwrap().expose().to_owned(), web_secret: web.unwrap().expose().to_owned() }
}

/// The time of one hash with every core hashing at once (shared caches, turbo and hyper-threads make a loaded
/// core slower than an idle one): what the pool can actually reach on this machine at this moment.
fn loaded_hash_time(cores: usize) -> f64 {
    let t = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| std::thread::spawn(|| (0..10).for_each(|_| drop(hash_password("x", PasswordCost::OWASP)))))
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    t.elapsed().as_secs_f64() / 10.0
}

fn main() {
    let seconds = arg("--seconds", 10);
    let concurrency = arg("--concurrency", 64);
    let duration = Duration::from_secs(seconds);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let dir = std::env::temp_dir().join(format!("portcullis-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let instances = arg("--instances", 1).max(1);
    let only = arg_text("--only").unwrap_or_else(|| "cc,refresh,introspect,login".into());
    let enabled = |name: &str| only.split(',').any(|s| s == name);
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build().unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build().unwrap();
    let database_url = arg_text("--database-url").map(|server| {
        let name = format!("portcullis_bench_{}", std::process::id());
        server_rt.block_on(portcullis_server::store::postgres::PgStore::scratch_database(&server, &name)).unwrap()
    });
    let master_key = portcullis_server::secrets::BearerSecret::generate().unwrap().expose().to_owned();
    let ports: Vec<u16> = (0..instances)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
        .collect();
    // Instances behind one load balancer share one issuer URL.
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mut bases = Vec::new();
    let mut store = None;
    for (i, port) in ports.into_iter().enumerate() {
        let settings = Config {
            listen: format!("127.0.0.1:{port}"),
            issuer: Some(issuer.clone()),
            data_dir: dir.clone(),
            database_url: database_url.clone(),
            master_key: Some(master_key.clone()),
            database_max_connections: arg("--pool", 16) as u32,
            login_rate_per_second: 0,
            log: "warn".into(),
            ..Config::default()
        }
        .validate()
        .unwrap();
        assert!(i == 0 || database_url.is_some(), "--instances needs --database-url (instances share one database)");
        let (running, _) =
            server_rt.block_on(serve::start(&settings, Arc::new(SystemClock), std::future::pending::<()>())).unwrap();
        store.get_or_insert_with(|| Arc::clone(&running.authority.store));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let admin = Admin::new(store.unwrap(), Arc::new(SystemClock));
    let setup = Arc::new(server_rt.block_on(setup(&admin, bases)));

    // The Argon2id ceiling: cores ÷ the time of one hash at the server's cost.
    let t = Instant::now();
    for _ in 0..5 {
        hash_password("bench password", PasswordCost::OWASP).unwrap();
    }
    let hash_time = t.elapsed().as_secs_f64() / 5.0;
    let ceiling = cores as f64 / hash_time;

    let backend = match &database_url {
        Some(_) => format!("PostgreSQL, {instances} instance(s)"),
        None => "SQLite".into(),
    };
    println!(
        "portcullis load benchmark ({backend}): {cores} cores, {concurrency} concurrent clients, {seconds} s per \
         scenario"
    );
    println!("(load generator in the same process, on its own {cores}-thread runtime)\n");
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency as usize).build().unwrap();

    client_rt.block_on(async {
        let token_url = setup.url(0, 1, "/oauth2/token");
        let rounds = arg("--rounds", 1).max(1);
        // With several instances and several rounds, the same load goes to one instance and to all of them in
        // alternating rounds (the host's speed drifts; medians of interleaved rounds compare fairly).
        let spreads: Vec<usize> =
            if instances > 1 && rounds > 1 { vec![1, instances as usize] } else { vec![instances as usize] };
        let load = Load { http: http.clone(), setup: Arc::clone(&setup), concurrency, duration };
        let at = post_form(&http, &token_url, ("svc", &setup.svc_secret), &[("grant_type", "client_credentials")])
            .await
            .unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let chains = Arc::new(std::sync::Mutex::new(Vec::new()));
        if enabled("refresh") {
            for _ in 0..concurrency {
                let form = [("grant_type", "password"), ("username", "bench"), ("password", "bench password")];
                let login = post_form(&http, &token_url, ("web", &setup.web_secret), &form).await.unwrap();
                chains.lock().unwrap().push(login["refresh_token"].as_str().unwrap().to_owned());
            }
        }
        for (name, scenario) in
            [("client_credentials tokens", "cc"), ("refresh rotations", "refresh"), ("introspections", "introspect")]
        {
            if !enabled(scenario) {
                continue;
            }
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); spreads.len()];
            for round in 0..rounds as usize {
                for k in 0..spreads.len() {
                    // Alternate which spread goes first, so neither always follows the other.
                    let k = if round % 2 == 0 { k } else { spreads.len() - 1 - k };
                    let (mut sample, elapsed) = match scenario {
                        "cc" => load.client_credentials(spreads[k]).await,
                        "refresh" => load.refresh(spreads[k], &chains).await,
                        _ => load.introspect(spreads[k], &at).await,
                    };
                    let label = if spreads.len() > 1 { format!("{name} ({} inst.)", spreads[k]) } else { name.into() };
                    rates[k].push(report(&label, &mut sample, elapsed));
                }
            }
            if spreads.len() > 1 {
                let median = |v: &mut Vec<f64>| {
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                let (one, all) = (median(&mut rates[0].clone()), median(&mut rates[1].clone()));
                println!(
                    "{name}: median of {rounds} rounds: one instance {one:.0}/s, {} instances {all:.0}/s ({:.2}x)\n",
                    spreads[1],
                    all / one
                );
            }
        }
        if !enabled("login") {
            return;
        }

        // password logins alone, then the token endpoint's latency while a login flood saturates the pool.
        let login = |deadline: Instant| {
            let (http, url, setup) = (http.clone(), token_url.clone(), Arc::clone(&setup));
            move |_| {
                let (http, url, setup) = (http.clone(), url.clone(), Arc::clone(&setup));
                timed_loop(deadline, move || {
                    let (http, url, setup) = (http.clone(), url.clone(), Arc::clone(&setup));
                    Box::pin(async move {
                        let form = [("grant_type", "password"), ("username", "bench"), ("password", "bench password")];
                        post_form(&http, &url, ("web", &setup.web_secret), &form).await.is_some()
                    })
                })
            }
        };
        // The host's speed drifts; the loaded ceiling is measured just before and just after the logins.
        let before = tokio::task::spawn_blocking(move || loaded_hash_time(cores)).await.unwrap();
        let (mut l, le) = run(concurrency, login(Instant::now() + duration)).await;
        let after = tokio::task::spawn_blocking(move || loaded_hash_time(cores)).await.unwrap();
        let loaded_hash_time = (before + after) / 2.0;
        let loaded_ceiling = cores as f64 / loaded_hash_time;
        let rate = report("password logins", &mut l, le);
        let deadline = Instant::now() + duration;
        let probe = load.client_credentials_until(4, 1, deadline);
        let ((mut f, fe), (mut p, pe)) = tokio::join!(run(concurrency, login(deadline)), probe);
        report("password logins (flood)", &mut f, fe);
        report("client_credentials during the flood", &mut p, pe);
        println!(
            "\nArgon2id: one hash {:.1} ms on an idle core, ceiling {ceiling:.1}/s on {cores} cores: logins alone \
             reached {:.2} of it",
            hash_time * 1000.0,
            rate / ceiling
        );
        println!(
            "          one hash {:.1} ms with all {cores} cores hashing, ceiling {loaded_ceiling:.1}/s: logins reached \
             {:.2} of it",
            loaded_hash_time * 1000.0,
            rate / loaded_ceiling
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
