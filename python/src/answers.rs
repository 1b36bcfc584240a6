//! `commlog.Message` and `commlog.FinancialOutcome`: the library's answers as immutable Python
//! objects.
//!
//! Each wraps the library's own value, so a tracking call answers with one allocation and no
//! conversion; the Python values (`str`, `Decimal` dollars, aware UTC `datetime`) are made when
//! an attribute is read. Both compare and hash by value, print like a dataclass, convert with
//! `to_dict()`, read the library's JSON with `from_json()` and pickle through it.

use chrono::{DateTime, Utc};
use commlog::{FinancialOutcome, Message, Money};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple, PyType};

/// Integer micro-dollars as exact `Decimal` dollars (`commlog._types.micros_to_dollars`).
fn dollars<'py>(py: Python<'py>, money: Money) -> PyResult<Bound<'py, PyAny>> {
    static TO_DOLLARS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let micros = i64::try_from(money.micros()).unwrap_or(i64::MAX);
    TO_DOLLARS
        .import(py, "commlog._types", "micros_to_dollars")?
        .call1((micros,))
}

/// A UTC time as an aware `datetime`. Milliseconds below 2^53 are exact in a float and far
/// above its error at any year, so `fromtimestamp` gives the exact millisecond.
fn datetime<'py>(py: Python<'py>, time: DateTime<Utc>) -> PyResult<Bound<'py, PyAny>> {
    static FROM_TIMESTAMP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let utc = UTC.import(py, "datetime", "timezone")?.getattr("utc")?;
    let seconds = time.timestamp_millis() as f64 / 1000.0;
    FROM_TIMESTAMP
        .get_or_try_init(py, || {
            py.import("datetime")?
                .getattr("datetime")?
                .getattr("fromtimestamp")
                .map(Bound::unbind)
        })?
        .bind(py)
        .call1((seconds, utc))
}

fn optional_datetime<'py>(
    py: Python<'py>,
    time: Option<DateTime<Utc>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    time.map(|t| datetime(py, t)).transpose()
}

/// The JSON text of `value`: a `str`, `bytes`, or a mapping (dumped by Python's `json`).
fn json_text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = value.cast::<PyString>() {
        return text.extract();
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return String::from_utf8(bytes.as_bytes().to_vec())
            .map_err(|err| pyo3::exceptions::PyValueError::new_err(err.to_string()));
    }
    static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    DUMPS
        .import(value.py(), "json", "dumps")?
        .call1((value,))?
        .extract()
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, value: &Bound<'_, PyAny>) -> PyResult<T> {
    serde_json::from_str(&json_text(value)?)
        .map_err(|err| pyo3::exceptions::PyValueError::new_err(format!("{what} JSON: {err}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("an answer always serializes")
}

/// `Name(field=repr, …)` over the object's fields, as a dataclass prints.
fn repr(object: &Bound<'_, PyAny>, name: &str, fields: &[&str]) -> PyResult<String> {
    let mut out = format!("{name}(");
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let value = object.getattr(*field)?.repr()?;
        out.push_str(field);
        out.push('=');
        out.push_str(&value.to_cow()?);
    }
    out.push(')');
    Ok(out)
}

/// `{field: value}` over the object's fields.
fn to_dict<'py>(object: &Bound<'py, PyAny>, fields: &[&str]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(object.py());
    for field in fields {
        dict.set_item(*field, object.getattr(*field)?)?;
    }
    Ok(dict)
}

/// `(cls.from_json, (json,))`: how pickle rebuilds an answer.
fn reduce<'py>(object: &Bound<'py, PyAny>, json: String) -> PyResult<Bound<'py, PyTuple>> {
    let rebuild = object.get_type().getattr("from_json")?;
    PyTuple::new(
        object.py(),
        [rebuild, (json,).into_pyobject(object.py())?.into_any()],
    )
}

/// One tracked message as it now stands.
#[pyclass(frozen, eq, hash, module = "commlog", name = "Message")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyMessage(pub Message);

impl PyMessage {
    const FIELDS: [&'static str; 13] = [
        "id",
        "user_id",
        "channel",
        "message_type",
        "status",
        "cost",
        "sent_at",
        "delivered_at",
        "opened_at",
        "clicked_at",
        "failed_at",
        "failure_reason",
        "action_taken",
    ];
}

#[pymethods]
impl PyMessage {
    /// Its id.
    #[getter]
    fn id(&self) -> u64 {
        self.0.id.0
    }

    /// Its recipient.
    #[getter]
    fn user_id(&self) -> u64 {
        self.0.user_id.0
    }

    /// `sms`, `email`, `push` or `in_app`.
    #[getter]
    fn channel(&self) -> &'static str {
        self.0.channel.as_str()
    }

    /// What kind of message.
    #[getter]
    fn message_type(&self) -> &str {
        &self.0.message_type
    }

    /// The furthest stage reached: `sent`, `delivered`, `opened`, `clicked` or `failed`.
    #[getter]
    fn status(&self) -> &'static str {
        self.0.status.as_str()
    }

    /// What sending it cost, in `Decimal` dollars.
    #[getter]
    fn cost<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dollars(py, self.0.cost)
    }

    /// When it was sent (aware UTC).
    #[getter]
    fn sent_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.0.sent_at)
    }

    /// Earliest delivery reported or implied, or None.
    #[getter]
    fn delivered_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        optional_datetime(py, self.0.delivered_at)
    }

    /// Earliest open reported or implied, or None.
    #[getter]
    fn opened_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        optional_datetime(py, self.0.opened_at)
    }

    /// Earliest click (an action whose name contains "click"), or None.
    #[getter]
    fn clicked_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        optional_datetime(py, self.0.clicked_at)
    }

    /// Earliest failure reported, or None.
    #[getter]
    fn failed_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        optional_datetime(py, self.0.failed_at)
    }

    /// The reason of the earliest failure, or None.
    #[getter]
    fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }

    /// The action with the latest time, or None.
    #[getter]
    fn action_taken(&self) -> Option<&str> {
        self.0.action_taken.as_deref()
    }

    /// A message from the library's (or the server's) JSON: a mapping, `str` or `bytes`.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, value: &Bound<'_, PyAny>) -> PyResult<PyMessage> {
        from_json("message", value).map(PyMessage)
    }

    /// The library's JSON of the message (money in `cost_micros`, RFC 3339 UTC times).
    fn to_json(&self) -> String {
        to_json(&self.0)
    }

    /// The message as a plain dict (Decimal dollars, aware datetimes).
    fn to_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        to_dict(slf.as_any(), &Self::FIELDS)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        repr(slf.as_any(), "Message", &Self::FIELDS)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        reduce(slf.as_any(), slf.get().to_json())
    }
}

/// A list of messages from the library's (or the server's) JSON array: `str` or `bytes`.
#[pyfunction]
pub fn messages_from_json(value: &Bound<'_, PyAny>) -> PyResult<Vec<PyMessage>> {
    let messages: Vec<Message> = from_json("message list", value)?;
    Ok(messages.into_iter().map(PyMessage).collect())
}

/// One financial outcome recorded for a user.
#[pyclass(frozen, eq, hash, module = "commlog", name = "FinancialOutcome")]
#[derive(PartialEq, Eq, Hash)]
pub struct PyOutcome(pub FinancialOutcome);

impl PyOutcome {
    const FIELDS: [&'static str; 4] = ["user_id", "outcome", "amount", "at"];
}

#[pymethods]
impl PyOutcome {
    /// The user.
    #[getter]
    fn user_id(&self) -> u64 {
        self.0.user_id.0
    }

    /// What happened.
    #[getter]
    fn outcome(&self) -> &str {
        &self.0.outcome
    }

    /// Its value in `Decimal` dollars (negative: a loss).
    #[getter]
    fn amount<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dollars(py, self.0.amount)
    }

    /// When (aware UTC).
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.0.at)
    }

    /// An outcome from the library's (or the server's) JSON: a mapping, `str` or `bytes`.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, value: &Bound<'_, PyAny>) -> PyResult<PyOutcome> {
        from_json("financial outcome", value).map(PyOutcome)
    }

    /// The library's JSON of the outcome (money in `amount_micros`, an RFC 3339 UTC time).
    fn to_json(&self) -> String {
        to_json(&self.0)
    }

    /// The outcome as a plain dict (Decimal dollars, an aware datetime).
    fn to_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        to_dict(slf.as_any(), &Self::FIELDS)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        repr(slf.as_any(), "FinancialOutcome", &Self::FIELDS)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        reduce(slf.as_any(), slf.get().to_json())
    }
}
