//! `commlog._native`: the commlog store embedded in a Python process.
//!
//! `NativeStore` wraps a `commlog::Store`. Its methods take plain values (integer
//! micro-dollars, milliseconds since the Unix epoch, names as strings) and answer with
//! `commlog.Message` and `commlog.FinancialOutcome` (answers.rs) or with the library's JSON
//! (reports, which the `commlog.Store` Python class turns into views). Every store call
//! releases the GIL. The
//! process id at open is recorded: a call from a forked child raises instead of touching a
//! store whose lock, sync thread and file state belong to the parent.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod answers;

use answers::{PyMessage, PyOutcome, messages_from_json};
use chrono::{DateTime, Utc};
use commlog::{
    BudgetScope, Channel, CostFilter, EffectivenessFilter, EngagementFilter, Error, ImpactFilter,
    MessageRef, Money, Month, Options, Period, StatsFilter, Store, SyncPolicy, UserId,
};
use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A message named by its id or by the external id it was sent with.
#[derive(FromPyObject)]
enum Ref {
    Id(u64),
    External(String),
}

impl From<Ref> for MessageRef {
    fn from(r: Ref) -> MessageRef {
        match r {
            Ref::Id(id) => MessageRef::from(id),
            Ref::External(external) => MessageRef::from(external),
        }
    }
}

fn invalid(field: &'static str, value: impl ToString, rule: &'static str) -> Error {
    Error::InvalidInput {
        field,
        value: value.to_string(),
        rule: Cow::Borrowed(rule),
    }
}

/// Milliseconds since the Unix epoch as a UTC time.
fn time(field: &'static str, ms: Option<i64>) -> Result<Option<DateTime<Utc>>, Error> {
    ms.map(|ms| {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| invalid(field, ms, "must be a time the calendar can hold"))
    })
    .transpose()
}

/// What an amount breaks when no `f64` carries it exactly (`Money::exact_dollars`).
const INEXACT_DOLLARS: &str = "has more significant digits than dollars carry exactly: at most \
     15, so any amount within ±$1,000,000,000";

/// Integer micro-dollars as the dollars the library takes: `Money::exact_dollars`, which the
/// library turns back into exactly these micros. An amount no `f64` carries exactly is refused,
/// naming `field`: never rounded.
fn dollars(field: &'static str, micros: i64) -> Result<f64, Error> {
    let money = Money::from_micros(i128::from(micros));
    money
        .exact_dollars()
        .ok_or_else(|| invalid(field, money, INEXACT_DOLLARS))
}

/// `Money::exact_dollars` of integer micro-dollars: the dollars the library turns back into
/// exactly `micros`, or None when no `f64` carries them (`commlog._types.to_micros` refuses
/// such an amount before a call, for the embedded store and the client alike).
#[pyfunction]
fn exact_dollars(micros: i64) -> Option<f64> {
    Money::from_micros(i128::from(micros)).exact_dollars()
}

fn channel(name: Option<&str>) -> Result<Option<Channel>, Error> {
    name.map(str::parse).transpose()
}

fn period(name: &str) -> Result<Period, Error> {
    match name.to_ascii_lowercase().as_str() {
        "day" => Ok(Period::Day),
        "week" => Ok(Period::Week),
        "month" => Ok(Period::Month),
        _ => Err(invalid("period", name, "must be day, week or month")),
    }
}

/// The store's error as the matching class of `commlog.errors`, with the error's fields.
fn to_py_err(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    let fields = PyDict::new(py);
    let (class, kind): (&str, &str) = {
        let set = |key: &str, value: Bound<'_, PyAny>| {
            let _ = fields.set_item(key, value);
        };
        match &err {
            Error::InvalidInput { field, value, rule } => {
                set("field", field.into_pyobject(py).unwrap().into_any());
                set("value", value.into_pyobject(py).unwrap().into_any());
                set("rule", rule.as_ref().into_pyobject(py).unwrap().into_any());
                ("InvalidInput", "invalid_input")
            }
            Error::UnknownMessage { id } => {
                set("id", id.0.into_pyobject(py).unwrap().into_any());
                ("UnknownMessage", "unknown_message")
            }
            Error::UnknownExternalId { external_id } => {
                set(
                    "external_id",
                    external_id.into_pyobject(py).unwrap().into_any(),
                );
                ("UnknownMessage", "unknown_message")
            }
            Error::Conflict {
                external_id,
                existing,
                field,
            } => {
                set(
                    "external_id",
                    external_id.into_pyobject(py).unwrap().into_any(),
                );
                set("existing", existing.0.into_pyobject(py).unwrap().into_any());
                set("field", field.into_pyobject(py).unwrap().into_any());
                ("Conflict", "conflict")
            }
            Error::Corruption {
                segment,
                offset,
                reason,
            } => {
                set(
                    "file",
                    segment
                        .display()
                        .to_string()
                        .into_pyobject(py)
                        .unwrap()
                        .into_any(),
                );
                set("offset", offset.into_pyobject(py).unwrap().into_any());
                set("reason", reason.into_pyobject(py).unwrap().into_any());
                ("StorageError", "corruption")
            }
            Error::Locked {
                path,
                holder,
                by_this_process,
                waited_ms,
            } => {
                set(
                    "path",
                    path.display()
                        .to_string()
                        .into_pyobject(py)
                        .unwrap()
                        .into_any(),
                );
                set("holder", holder.into_pyobject(py).unwrap().into_any());
                set(
                    "by_this_process",
                    by_this_process
                        .into_pyobject(py)
                        .unwrap()
                        .to_owned()
                        .into_any(),
                );
                set("waited_ms", waited_ms.into_pyobject(py).unwrap().into_any());
                ("Locked", "locked")
            }
            Error::Io { path, source } => {
                set(
                    "path",
                    path.display()
                        .to_string()
                        .into_pyobject(py)
                        .unwrap()
                        .into_any(),
                );
                if let Some(errno) = source.raw_os_error() {
                    set("errno", errno.into_pyobject(py).unwrap().into_any());
                }
                ("StorageError", "io")
            }
            Error::Poisoned {
                first,
                event_may_be_durable,
            } => {
                set("first", first.into_pyobject(py).unwrap().into_any());
                set(
                    "event_may_be_durable",
                    event_may_be_durable
                        .into_pyobject(py)
                        .unwrap()
                        .to_owned()
                        .into_any(),
                );
                ("StorageError", "poisoned")
            }
            Error::ReadOnly { operation } => {
                set("operation", operation.into_pyobject(py).unwrap().into_any());
                ("CommlogError", "read_only")
            }
            _ => ("CommlogError", "error"),
        }
    };
    commlog_error(py, class, &message, kind, &fields)
}

/// An instance of `commlog.errors.<class>(message, kind, **fields)` as a Python exception.
fn commlog_error(
    py: Python<'_>,
    class: &str,
    message: &str,
    kind: &str,
    fields: &Bound<'_, PyDict>,
) -> PyErr {
    let made = py
        .import("commlog.errors")
        .and_then(|module| module.getattr(class))
        .and_then(|class| class.call((message, kind), Some(fields)));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        Err(err) => err,
    }
}

/// The error of a call from a process other than the one that opened the store, or on a
/// closed store.
fn usage_error(py: Python<'_>, message: &str, kind: &str, fields: &[(&str, Py<PyAny>)]) -> PyErr {
    let dict = PyDict::new(py);
    for (key, value) in fields {
        if let Err(err) = dict.set_item(key, value) {
            return err;
        }
    }
    commlog_error(py, "CommlogError", message, kind, &dict)
}

/// The arguments the view queries share: whose messages, of which type, on which channel,
/// sent when (`start_date` and `end_date`, in milliseconds since the Unix epoch).
struct Scope {
    user: Option<UserId>,
    message_type: Option<String>,
    channel: Option<Channel>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl Scope {
    fn new(
        user_id: Option<u64>,
        message_type: Option<String>,
        channel: Option<&str>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> Result<Scope, Error> {
        Ok(Scope {
            user: user_id.map(Into::into),
            message_type,
            channel: self::channel(channel)?,
            start: time("start_date", start_ms)?,
            end: time("end_date", end_ms)?,
        })
    }
}

/// A view's filter with the fields it has taken from a [`Scope`], the rest its defaults.
macro_rules! filter_from {
    ($filter:ident { $($field:ident),* } $scope:expr) => {{
        let scope: Scope = $scope;
        // Needless for a filter with exactly these fields; the others keep their defaults.
        #[allow(clippy::needless_update)]
        let filter = $filter {
            $($field: scope.$field,)*
            ..$filter::new()
        };
        filter
    }};
}

/// The commlog store embedded in this process.
#[pyclass(frozen, module = "commlog._native")]
struct NativeStore {
    store: RwLock<Option<Arc<Store>>>,
    pid: u32,
    path: PathBuf,
    read_only: bool,
}

impl NativeStore {
    /// The open store, if this process opened it.
    fn get(&self, py: Python<'_>) -> PyResult<Arc<Store>> {
        let now = std::process::id();
        if now != self.pid {
            return Err(usage_error(
                py,
                &format!(
                    "store {} opened in pid {}, used in forked pid {now}: open the store after fork",
                    self.path.display(),
                    self.pid
                ),
                "forked",
                &[
                    (
                        "opened_pid",
                        self.pid.into_pyobject(py)?.into_any().unbind(),
                    ),
                    ("current_pid", now.into_pyobject(py)?.into_any().unbind()),
                ],
            ));
        }
        match self.store.read().as_ref() {
            Some(store) => Ok(Arc::clone(store)),
            None => Err(usage_error(
                py,
                &format!("store {} is closed", self.path.display()),
                "closed",
                &[],
            )),
        }
    }

    /// Runs `f` on the store without the GIL, mapping its error.
    fn run<T, F>(&self, py: Python<'_>, f: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(&Store) -> Result<T, Error> + Send,
    {
        let store = self.get(py)?;
        py.detach(move || f(&store))
            .map_err(|err| to_py_err(py, err))
    }

    fn json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
        serde_json::to_string(value).map_err(|err| Error::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(err),
        })
    }
}

impl Drop for NativeStore {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child must not close the parent's store (its sync thread does not exist
            // here, and closing would write to the parent's log): leave it untouched.
            if let Some(store) = self.store.get_mut().take() {
                std::mem::forget(store);
            }
        }
    }
}

#[pymethods]
impl NativeStore {
    /// Opens (creating if missing) the store in directory `path` as its one writer.
    /// `sync`: "always", "interval" (every `interval_ms`) or "never".
    #[staticmethod]
    #[pyo3(signature = (path, sync = "always", interval_ms = 100))]
    fn open(py: Python<'_>, path: PathBuf, sync: &str, interval_ms: u64) -> PyResult<NativeStore> {
        let policy = match sync.to_ascii_lowercase().as_str() {
            "always" => SyncPolicy::Always,
            "never" => SyncPolicy::Never,
            "interval" if interval_ms >= 1 => {
                SyncPolicy::Interval(Duration::from_millis(interval_ms))
            }
            "interval" => {
                return Err(to_py_err(
                    py,
                    invalid("interval_ms", interval_ms, "must be at least 1"),
                ));
            }
            _ => {
                return Err(to_py_err(
                    py,
                    invalid("sync", sync, "must be always, interval or never"),
                ));
            }
        };
        let options = Options {
            sync: policy,
            ..Options::default()
        };
        let dir = path.clone();
        let store = py
            .detach(move || Store::open_with(&dir, options))
            .map_err(|err| to_py_err(py, err))?;
        Ok(NativeStore {
            store: RwLock::new(Some(Arc::new(store))),
            pid: std::process::id(),
            path,
            read_only: false,
        })
    }

    /// Opens the store in `path` read-only: a snapshot of the log as it is now, beside a
    /// writer if there is one. `decode_on_demand`: `Options::decode_on_demand`, for a reader
    /// that asks about a few users, which then also leaves the snapshot's indexes unread
    /// (`Options::load_indexes` false), as the CLI's `history` does; its messages are still
    /// counted into the totals over all time as they are checked (`Options::count_totals`), so
    /// that stats over every user and all time answer at once, as the CLI's `stats` does.
    #[staticmethod]
    #[pyo3(signature = (path, decode_on_demand = false))]
    fn open_read_only(
        py: Python<'_>,
        path: PathBuf,
        decode_on_demand: bool,
    ) -> PyResult<NativeStore> {
        let dir = path.clone();
        let options = Options {
            decode_on_demand,
            load_indexes: !decode_on_demand,
            ..Options::default()
        };
        let store = py
            .detach(move || Store::open_read_only_with(&dir, options))
            .map_err(|err| to_py_err(py, err))?;
        Ok(NativeStore {
            store: RwLock::new(Some(Arc::new(store))),
            pid: std::process::id(),
            path,
            read_only: true,
        })
    }

    /// The store's directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// True when opened with `open_read_only`.
    #[getter]
    fn read_only(&self) -> bool {
        self.read_only
    }

    /// True once closed.
    #[getter]
    fn closed(&self) -> bool {
        self.store.read().is_none()
    }

    /// The id of the process that opened the store.
    #[getter]
    fn pid(&self) -> u32 {
        self.pid
    }

    /// Syncs everything, marks the log cleanly closed and releases the lock. Closing twice is
    /// a no-op. Calls still running in other threads finish first.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.get(py).map(drop).or_else(|err| {
            if self.store.read().is_none() && std::process::id() == self.pid {
                Ok(())
            } else {
                Err(err)
            }
        })?;
        let Some(store) = self.store.write().take() else {
            return Ok(());
        };
        py.detach(move || {
            // Another thread may still be inside a call: wait for it to let go.
            let mut store = store;
            loop {
                match Arc::try_unwrap(store) {
                    Ok(store) => return store.close(),
                    Err(shared) => {
                        store = shared;
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
            }
        })
        .map_err(|err| to_py_err(py, err))
    }

    /// Hands every event appended so far to the OS.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |store| store.flush())
    }

    /// Makes every event appended so far durable.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |store| store.sync())
    }

    /// Applies what the writer appended since (a read-only store); the events applied.
    fn refresh(&self, py: Python<'_>) -> PyResult<u64> {
        self.run(py, |store| store.refresh())
    }

    /// Writes a snapshot of the views now; its path, or `None` if the newest covers the log.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Option<PathBuf>> {
        self.run(py, |store| store.snapshot())
    }

    #[pyo3(signature = (user_id, channel, message_type, cost_micros, sent_at_ms = None, external_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn track_message_sent(
        &self,
        py: Python<'_>,
        user_id: u64,
        channel: String,
        message_type: String,
        cost_micros: i64,
        sent_at_ms: Option<i64>,
        external_id: Option<String>,
    ) -> PyResult<PyMessage> {
        self.run(py, move |store| {
            let channel: Channel = channel.parse()?;
            let sent_at = time("sent_at", sent_at_ms)?;
            store
                .track_message_sent_with(
                    user_id,
                    channel,
                    &message_type,
                    dollars("cost", cost_micros)?,
                    sent_at,
                    external_id.as_deref(),
                )
                .map(PyMessage)
        })
    }

    #[pyo3(signature = (message, at_ms = None))]
    fn track_message_delivered(
        &self,
        py: Python<'_>,
        message: Ref,
        at_ms: Option<i64>,
    ) -> PyResult<PyMessage> {
        let message = MessageRef::from(message);
        self.run(py, move |store| {
            store
                .track_message_delivered(message, time("at", at_ms)?)
                .map(PyMessage)
        })
    }

    #[pyo3(signature = (message, at_ms = None))]
    fn track_message_opened(
        &self,
        py: Python<'_>,
        message: Ref,
        at_ms: Option<i64>,
    ) -> PyResult<PyMessage> {
        let message = MessageRef::from(message);
        self.run(py, move |store| {
            store
                .track_message_opened(message, time("at", at_ms)?)
                .map(PyMessage)
        })
    }

    #[pyo3(signature = (message, action, at_ms = None))]
    fn track_user_action(
        &self,
        py: Python<'_>,
        message: Ref,
        action: String,
        at_ms: Option<i64>,
    ) -> PyResult<PyMessage> {
        let message = MessageRef::from(message);
        self.run(py, move |store| {
            store
                .track_user_action(message, &action, time("at", at_ms)?)
                .map(PyMessage)
        })
    }

    #[pyo3(signature = (message, reason, at_ms = None))]
    fn track_message_failed(
        &self,
        py: Python<'_>,
        message: Ref,
        reason: String,
        at_ms: Option<i64>,
    ) -> PyResult<PyMessage> {
        let message = MessageRef::from(message);
        self.run(py, move |store| {
            store
                .track_message_failed(message, &reason, time("at", at_ms)?)
                .map(PyMessage)
        })
    }

    #[pyo3(signature = (user_id, outcome, amount_micros, at_ms = None))]
    fn track_financial_outcome(
        &self,
        py: Python<'_>,
        user_id: u64,
        outcome: String,
        amount_micros: i64,
        at_ms: Option<i64>,
    ) -> PyResult<PyOutcome> {
        self.run(py, move |store| {
            let at = time("at", at_ms)?.unwrap_or_else(Utc::now);
            store
                .track_financial_outcome_at(
                    user_id,
                    &outcome,
                    dollars("amount", amount_micros)?,
                    at,
                )
                .map(PyOutcome)
        })
    }

    #[pyo3(signature = (scope, month, amount_micros, alert_percent = None))]
    fn set_budget(
        &self,
        py: Python<'_>,
        scope: String,
        month: String,
        amount_micros: i64,
        alert_percent: Option<i64>,
    ) -> PyResult<()> {
        self.run(py, move |store| {
            let scope: BudgetScope = scope.parse()?;
            let alert_percent = alert_percent
                .map(|p| {
                    u8::try_from(p)
                        .map_err(|_| invalid("alert_percent", p, "must be from 1 to 100"))
                })
                .transpose()?;
            store.set_budget(
                scope,
                &month,
                dollars("amount", amount_micros)?,
                alert_percent,
            )
        })
    }

    /// The message with this id or external id.
    fn message(&self, py: Python<'_>, message: Ref) -> PyResult<PyMessage> {
        let message = MessageRef::from(message);
        self.run(py, move |store| store.get_message(message).map(PyMessage))
    }

    /// The message sent with this external id, or None.
    fn message_by_external_id(
        &self,
        py: Python<'_>,
        external_id: String,
    ) -> PyResult<Option<PyMessage>> {
        self.run(py, move |store| {
            store
                .message_by_external_id(&external_id)
                .map(|m| m.map(PyMessage))
        })
    }

    /// The external id a message was sent with, or None.
    fn external_id(&self, py: Python<'_>, id: u64) -> PyResult<Option<String>> {
        self.run(py, move |store| store.get_external_id(id))
    }

    /// The user's messages, newest sent first, at most `limit`.
    #[pyo3(signature = (user_id, limit = 50))]
    fn history(&self, py: Python<'_>, user_id: u64, limit: usize) -> PyResult<Vec<PyMessage>> {
        self.run(py, move |store| {
            store
                .get_user_communication_history(user_id, limit)
                .map(|messages| messages.into_iter().map(PyMessage).collect())
        })
    }

    /// `CommunicationStats` as JSON.
    #[pyo3(signature = (user_id = None, message_type = None, channel = None, start_ms = None, end_ms = None))]
    fn stats_json(
        &self,
        py: Python<'_>,
        user_id: Option<u64>,
        message_type: Option<String>,
        channel: Option<String>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> PyResult<String> {
        self.run(py, move |store| {
            let scope = Scope::new(user_id, message_type, channel.as_deref(), start_ms, end_ms)?;
            let filter =
                filter_from!(StatsFilter { user, message_type, channel, start, end } scope);
            Self::json(&store.get_communication_stats(&filter)?)
        })
    }

    /// `UserEngagement` as JSON.
    #[pyo3(signature = (user_id, message_type = None, channel = None, start_ms = None, end_ms = None))]
    fn engagement_json(
        &self,
        py: Python<'_>,
        user_id: u64,
        message_type: Option<String>,
        channel: Option<String>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> PyResult<String> {
        self.run(py, move |store| {
            let scope = Scope::new(None, message_type, channel.as_deref(), start_ms, end_ms)?;
            let filter = filter_from!(EngagementFilter { message_type, channel, start, end } scope);
            Self::json(&store.get_user_engagement(user_id, &filter)?)
        })
    }

    /// `ChannelReport` as JSON.
    #[pyo3(signature = (user_id = None, message_type = None, start_ms = None, end_ms = None, period = None))]
    fn channels_json(
        &self,
        py: Python<'_>,
        user_id: Option<u64>,
        message_type: Option<String>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        period: Option<String>,
    ) -> PyResult<String> {
        self.run(py, move |store| {
            let scope = Scope::new(user_id, message_type, None, start_ms, end_ms)?;
            let mut filter =
                filter_from!(EffectivenessFilter { user, message_type, start, end } scope);
            if let Some(period) = period {
                filter = filter.period(self::period(&period)?);
            }
            Self::json(&store.get_channel_effectiveness(&filter)?)
        })
    }

    /// `CostReport` as JSON.
    #[pyo3(signature = (month = None, user_id = None, message_type = None, channel = None, start_ms = None, end_ms = None))]
    #[allow(clippy::too_many_arguments)]
    fn costs_json(
        &self,
        py: Python<'_>,
        month: Option<String>,
        user_id: Option<u64>,
        message_type: Option<String>,
        channel: Option<String>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> PyResult<String> {
        self.run(py, move |store| {
            let month = month.map(|month| month.parse::<Month>()).transpose()?;
            let scope = Scope::new(user_id, message_type, channel.as_deref(), start_ms, end_ms)?;
            let mut filter =
                filter_from!(CostFilter { user, message_type, channel, start, end } scope);
            if let Some(month) = month {
                filter = filter.month(month);
            }
            Self::json(&store.get_cost_report(&filter)?)
        })
    }

    /// `ImpactReport` as JSON.
    #[pyo3(signature = (user_id = None, message_type = None, channel = None, start_ms = None, end_ms = None))]
    fn impact_json(
        &self,
        py: Python<'_>,
        user_id: Option<u64>,
        message_type: Option<String>,
        channel: Option<String>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> PyResult<String> {
        self.run(py, move |store| {
            let scope = Scope::new(user_id, message_type, channel.as_deref(), start_ms, end_ms)?;
            let filter =
                filter_from!(ImpactFilter { user, message_type, channel, start, end } scope);
            Self::json(&store.get_financial_impact(&filter)?)
        })
    }

    fn __repr__(&self) -> String {
        let state = if self.store.read().is_none() {
            "closed"
        } else if self.read_only {
            "read-only"
        } else {
            "open"
        };
        format!(
            "NativeStore({:?}, {state})",
            self.path.display().to_string()
        )
    }
}

/// The Python module `commlog._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeStore>()?;
    m.add_class::<PyMessage>()?;
    m.add_class::<PyOutcome>()?;
    m.add_function(wrap_pyfunction!(messages_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(exact_dollars, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
