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
use chrono::{DateTime, Utc};
use commlog::{BudgetScope, Call, Channel, MessageRef, Store, SyncPolicy, Tracked, UserId};
use tokio::sync::oneshot;

use crate::error::ApiError;

/// Committer threads under `SyncPolicy::Always`.
const COMMITTERS: usize = 4;

/// The calls a committer takes at most in one batch (the requests waiting beyond them go into
/// the next one).
const COMMIT_CALLS_MAX: usize = 65_536;

/// Batches of more calls than this run on the blocking pool rather than on the request's task.
const INLINE_CALLS_MAX: usize = 256;

/// A tracking call as a request gave it, checked by the API, owning its strings.
#[derive(Debug)]
pub(crate) enum OwnedCall {
    Sent {
        user: u64,
        channel: Channel,
        message_type: String,
        cost: f64,
        sent_at: Option<DateTime<Utc>>,
        external_id: Option<String>,
    },
    Delivered {
        message: MessageRef,
        at: Option<DateTime<Utc>>,
    },
    Opened {
        message: MessageRef,
        at: Option<DateTime<Utc>>,
    },
    Failed {
        message: MessageRef,
        reason: String,
        at: Option<DateTime<Utc>>,
    },
    Action {
        message: MessageRef,
        action: String,
        at: Option<DateTime<Utc>>,
    },
    Outcome {
        user: u64,
        outcome: String,
        amount: f64,
        at: Option<DateTime<Utc>>,
    },
    Budget {
        scope: BudgetScope,
        month: String,
        amount: f64,
        alert_percent: Option<u8>,
    },
}

impl OwnedCall {
    /// The library's call.
    pub fn call(&self) -> Call<'_> {
        match self {
            OwnedCall::Sent {
                user,
                channel,
                message_type,
                cost,
                sent_at,
                external_id,
            } => Call::Sent {
                user: UserId(*user),
                channel: *channel,
                message_type,
                cost: *cost,
                sent_at: *sent_at,
                external_id: external_id.as_deref(),
            },
            OwnedCall::Delivered { message, at } => Call::Delivered {
                message: message.clone(),
                at: *at,
            },
            OwnedCall::Opened { message, at } => Call::Opened {
                message: message.clone(),
                at: *at,
            },
            OwnedCall::Failed {
                message,
                reason,
                at,
            } => Call::Failed {
                message: message.clone(),
                reason,
                at: *at,
            },
            OwnedCall::Action {
                message,
                action,
                at,
            } => Call::Action {
                message: message.clone(),
                action,
                at: *at,
            },
            OwnedCall::Outcome {
                user,
                outcome,
                amount,
                at,
            } => Call::Outcome {
                user: UserId(*user),
                outcome,
                amount: *amount,
                at: *at,
            },
            OwnedCall::Budget {
                scope,
                month,
                amount,
                alert_percent,
            } => Call::Budget {
                scope: *scope,
                month,
                amount: *amount,
                alert_percent: *alert_percent,
            },
        }
    }
}

/// Each call's answer, in order.
pub(crate) type Answers = Vec<Result<Tracked, commlog::Error>>;

/// One request's calls, waiting for the committer.
struct Job {
    requests: Vec<OwnedCall>,
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
    pub async fn track(&self, requests: Vec<OwnedCall>) -> Result<Answers, ApiError> {
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
    pub async fn track_one(&self, request: OwnedCall) -> Result<Tracked, ApiError> {
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

fn track(store: &Store, requests: &[OwnedCall]) -> Result<Answers, ApiError> {
    let calls: Vec<Call<'_>> = requests.iter().map(OwnedCall::call).collect();
    Ok(store.track_batch(&calls)?)
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
        let mut all: Vec<Call<'_>> = Vec::with_capacity(calls);
        all.extend(
            batch
                .iter()
                .flat_map(|job| job.requests.iter().map(OwnedCall::call)),
        );
        match store.track_batch(&all) {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for job in batch {
                    let share = answers.by_ref().take(job.requests.len()).collect();
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
