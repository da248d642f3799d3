//! argon2 on a small fixed set of threads, each reusing one memory block.
//!
//! argon2id with the default parameters needs 19 MiB per check. On tokio's blocking pool every
//! new thread got its own glibc arena and the process grew to a gigabyte under guessing, never
//! giving it back. Here `threads` threads each keep one block of `m_cost` KiB for their life, so
//! the memory budget is `threads × m_cost` and a check that nobody waits for any more still
//! runs to its end without holding anything else.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::secret::Secret;

/// The check could not even be queued: every thread is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password checks are queued to the limit")]
pub struct Busy;

struct Job {
    phc: Arc<str>,
    secret: Secret,
    reply: oneshot::Sender<bool>,
}

/// Runs argon2 verifications on dedicated threads.
pub struct Hasher {
    jobs: SyncSender<Job>,
    threads: usize,
}

/// Largest `m` (KiB) a thread keeps a block for; a PHC asking for more is refused rather
/// than letting a config entry grow the process without bound.
const MAX_M_COST: u32 = 256 * 1024;

impl Hasher {
    /// Starts `threads` threads (at least one) with room for `queue` waiting checks.
    pub fn new(threads: usize, queue: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&rx))
                .expect("spawn an argon2 thread");
        }
        Self { jobs: tx, threads }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether `secret` matches the argon2 PHC string `phc`. The check is queued at once and
    /// runs whether or not the caller still waits for it.
    pub async fn verify(&self, phc: Arc<str>, secret: &str) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            phc,
            secret: Secret::new(secret),
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(answer.await.unwrap_or(false)),
            Err(TrySendError::Full(_)) => Err(Busy),
            Err(TrySendError::Disconnected(_)) => Ok(false),
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let ok = matches(&job.phc, job.secret.expose(), &mut memory);
        let _ = job.reply.send(ok);
    }
}

/// Verifies with `memory` grown once to the hash's `m` and reused afterwards.
fn matches(phc: &str, secret: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::new(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let blocks = params.m_cost() as usize;
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(
            secret.as_bytes(),
            salt.as_ref(),
            &mut out,
            &mut memory[..blocks],
        )
        .is_err()
    {
        return false;
    }
    out.ct_eq(expected.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_like_the_argon2_crate() {
        let h = Hasher::new(1, 4);
        let phc: Arc<str> = Arc::from(crate::auth::hash_password("99887766").unwrap());
        assert_eq!(h.verify(phc.clone(), "99887766").await, Ok(true));
        assert_eq!(h.verify(phc.clone(), "99887767").await, Ok(false));
        assert_eq!(h.verify(Arc::from("not a phc"), "x").await, Ok(false));
        // A smaller hash after a larger one reuses the block.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        use argon2::password_hash::PasswordHasher;
        let small_phc = small.hash_password(b"1234").unwrap().to_string();
        assert_eq!(h.verify(Arc::from(small_phc), "1234").await, Ok(true));
    }

    #[tokio::test]
    async fn a_full_queue_says_busy_instead_of_piling_up() {
        let h = Hasher::new(1, 1);
        let phc: Arc<str> = Arc::from(crate::auth::hash_password("x").unwrap());
        // One running, one queued: the third cannot be queued.
        let a = h.verify(phc.clone(), "a");
        let b = h.verify(phc.clone(), "b");
        let c = h.verify(phc.clone(), "c");
        let (a, b, c) = tokio::join!(a, b, c);
        let busy = [a, b, c].iter().filter(|r| **r == Err(Busy)).count();
        assert!(busy >= 1, "{a:?} {b:?} {c:?}");
    }
}
