//! Password checks on a bounded pool: Argon2id runs on blocking threads, never on the async workers, at most
//! one per core at a time. A flood of logins queues up to a bound and is then refused at once with
//! `temporarily_unavailable`, so it cannot starve the token endpoint or grow memory without limit.

use std::sync::Arc;

use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::secrets::{verify_login, PasswordCost};

#[derive(Debug)]
pub struct PasswordPool {
    running: Arc<Semaphore>,
    queue: Arc<Semaphore>,
    cost: PasswordCost,
}

/// The pool is full: answer 503 and let the client retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl PasswordPool {
    /// `workers` hashes at once (default: the number of cores), and up to `queue` more waiting.
    pub fn new(workers: usize, queue: usize, cost: PasswordCost) -> PasswordPool {
        PasswordPool {
            running: Arc::new(Semaphore::new(workers.max(1))),
            queue: Arc::new(Semaphore::new(workers.max(1) + queue)),
            cost,
        }
    }

    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Checks `password` against `stored` (or against a dummy hash when there is no such user, taking the
    /// same time). Returns whether it matched.
    pub async fn verify(&self, password: Zeroizing<String>, stored: Option<String>) -> Result<bool, Busy> {
        let _queued = Arc::clone(&self.queue).try_acquire_owned().map_err(|_| Busy)?;
        let _running = Arc::clone(&self.running).acquire_owned().await.map_err(|_| Busy)?;
        let cost = self.cost;
        tokio::task::spawn_blocking(move || verify_login(&password, stored.as_deref(), cost)).await.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_run_one_per_worker_and_a_full_queue_refuses_at_once() {
        let pool = Arc::new(PasswordPool::new(1, 0, PasswordCost::OWASP));
        let hash = crate::secrets::hash_password("pw", PasswordCost::OWASP).unwrap();
        assert_eq!(pool.verify(Zeroizing::new("pw".into()), Some(hash.clone())).await, Ok(true));
        assert_eq!(pool.verify(Zeroizing::new("no".into()), Some(hash.clone())).await, Ok(false));
        assert_eq!(pool.verify(Zeroizing::new("pw".into()), None).await, Ok(false), "unknown user");
        // Hold the only worker: the next check queues, and the one after it finds the queue full.
        let worker = Arc::clone(&pool.running).acquire_owned().await.unwrap();
        let queued = tokio::spawn({
            let (pool, hash) = (Arc::clone(&pool), hash.clone());
            async move { pool.verify(Zeroizing::new("pw".into()), Some(hash)).await }
        });
        while pool.queue.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.verify(Zeroizing::new("pw".into()), Some(hash)).await, Err(Busy));
        drop(worker);
        assert_eq!(queued.await.unwrap(), Ok(true), "the queued check runs once the worker is free");
    }
}
