//! How the API's tracking calls reach the store.
//!
//! Under `SyncPolicy::Always` a call is answered only once its event is durable. A committer
//! thread takes the calls of every request waiting, applies them as one [`Store::track_batch`]
//! (one write, one fsync for all of them) and answers each request when it returns: group
//! commit across requests and connections, without a thread blocked per request. There are
//! [`COMMITTERS`] of them, so that while one waits for its fsync the next appends the calls
//! that arrived meanwhile (the library's group commit starts their fsync as soon as the first
//! one ends). Under `Interval` and `Never` a call never waits for the disk, so the request's own
//! task applies it (a large batch on the blocking pool).

use std::sync::Arc;
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use axum::http::StatusCode;
use commlog::{Call, Store, SyncPolicy, Tracked};
use tokio::sync::oneshot;

use crate::error::ApiError;

/// Committer threads under `SyncPolicy::Always`.
const COMMITTERS: usize = 4;

/// The calls a committer takes at most in one batch (the requests waiting beyond them go into
/// the next one).
const COMMIT_CALLS_MAX: usize = 65_536;

/// Batches of more calls than this run on the blocking pool rather than on the request's task.
const INLINE_CALLS_MAX: usize = 256;

/// Each call's answer, in order.
pub(crate) type Answers = Vec<Result<Tracked, commlog::Error>>;

/// One request's calls, waiting for the committer.
struct Job {
    requests: Vec<Call<'static>>,
    reply: oneshot::Sender<Result<Answers, ApiError>>,
}

/// Applies tracking calls to the store as its sync policy needs (see the module's text).
#[derive(Clone)]
pub(crate) struct Tracker {
    store: Arc<Store>,
    /// `Some` under `SyncPolicy::Always`.
    committer: Option<mpsc::Sender<Job>>,
}

impl Tracker {
    /// The tracker, and under `Always` the committer threads, which end once every clone of
    /// the tracker is dropped and the calls already queued are answered.
    pub fn start(store: Arc<Store>, sync: SyncPolicy) -> (Tracker, Vec<JoinHandle<()>>) {
        if sync != SyncPolicy::Always {
            let tracker = Tracker {
                store,
                committer: None,
            };
            return (tracker, Vec::new());
        }
        let (queue, jobs) = mpsc::channel();
        let jobs = Arc::new(Mutex::new(jobs));
        let threads = (0..COMMITTERS)
            .map(|number| {
                let (store, jobs) = (Arc::clone(&store), Arc::clone(&jobs));
                std::thread::Builder::new()
                    .name(format!("commlog-committer-{number}"))
                    .spawn(move || commit(&store, &jobs))
                    .expect("start a committer thread")
            })
            .collect();
        let tracker = Tracker {
            store,
            committer: Some(queue),
        };
        (tracker, threads)
    }

    /// Applies `requests` in order; each call's answer (a failing call does not stop the
    /// others). `Err` when none could be tried: the store is poisoned or the server stops.
    pub async fn track(&self, requests: Vec<Call<'static>>) -> Result<Answers, ApiError> {
        match &self.committer {
            Some(queue) => {
                let (reply, answer) = oneshot::channel();
                queue
                    .send(Job { requests, reply })
                    .map_err(|_| stopping())?;
                answer.await.map_err(|_| stopping())?
            }
            None if requests.len() <= INLINE_CALLS_MAX => track(&self.store, &requests),
            None => {
                let store = Arc::clone(&self.store);
                tokio::task::spawn_blocking(move || track(&store, &requests))
                    .await
                    .map_err(|_| stopping())?
            }
        }
    }

    /// One call's answer.
    pub async fn track_one(&self, request: Call<'static>) -> Result<Tracked, ApiError> {
        let mut answers = self.track(vec![request]).await?;
        Ok(answers.pop().expect("one answer per call")?)
    }
}

fn stopping() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopping",
        "the server is stopping: the call was not applied",
    )
}

fn track(store: &Store, calls: &[Call<'_>]) -> Result<Answers, ApiError> {
    Ok(store.track_batch(calls)?)
}

/// A committer: takes every job waiting (up to [`COMMIT_CALLS_MAX`] calls), applies their
/// calls as one batch and answers each job with its share.
fn commit(store: &Store, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let (batch, calls) = {
            // One committer at a time waits for jobs and takes all that are waiting.
            let jobs = jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Ok(first) = jobs.recv() else { return };
            let mut batch = vec![first];
            let mut calls = batch[0].requests.len();
            while calls < COMMIT_CALLS_MAX {
                match jobs.try_recv() {
                    Ok(job) => {
                        calls += job.requests.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            (batch, calls)
        };
        let (mut batch, calls) = (batch, calls);
        let mut all: Vec<Call<'static>> = Vec::with_capacity(calls);
        let mut shares = Vec::with_capacity(batch.len());
        for job in &mut batch {
            shares.push(job.requests.len());
            all.append(&mut job.requests);
        }
        match store.track_batch(&all) {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for (job, share) in batch.into_iter().zip(shares) {
                    let share = answers.by_ref().take(share).collect();
                    // A client that hung up no longer waits for its answer.
                    let _ = job.reply.send(Ok(share));
                }
            }
            Err(error) => {
                let error = ApiError::from(error);
                for job in batch {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
