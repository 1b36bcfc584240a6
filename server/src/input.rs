//! The API's request bodies and query parameters, and how they become library calls.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commlog::{
    BudgetScope, Call, Channel, CostFilter, DayEdge, EffectivenessFilter, EngagementFilter,
    ImpactFilter, MessageRef, Money, Month, Period, StatsFilter, UserId, quote_value,
};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// `POST /v1/messages`, batch call `sent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sent {
    /// A batch line's `call`.
    #[serde(default, rename = "call")]
    pub _call: CallField,
    pub user_id: u64,
    pub channel: String,
    pub message_type: String,
    #[serde(default)]
    pub cost_micros: Option<i64>,
    /// Dollars, as the library takes them.
    #[serde(default)]
    pub cost: Option<f64>,
    #[serde(default)]
    pub sent_at: Option<String>,
    /// The provider's message id or the caller's idempotency key (unique per store).
    #[serde(default)]
    pub external_id: Option<String>,
}

/// `POST /v1/messages/{id}/delivered` and `/opened`: only an optional time.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct At {
    #[serde(default)]
    pub at: Option<String>,
}

/// `POST /v1/messages/{id}/failed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Failed {
    pub reason: String,
    #[serde(default)]
    pub at: Option<String>,
}

/// `POST /v1/messages/{id}/actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Action {
    pub action: String,
    #[serde(default)]
    pub at: Option<String>,
}

/// `POST /v1/outcomes`, batch call `outcome`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Outcome {
    /// A batch line's `call`.
    #[serde(default, rename = "call")]
    pub _call: CallField,
    pub user_id: u64,
    pub outcome: String,
    #[serde(default)]
    pub amount_micros: Option<i64>,
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub at: Option<String>,
}

/// `PUT /v1/budgets`, batch call `budget`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Budget {
    /// A batch line's `call`.
    #[serde(default, rename = "call")]
    pub _call: CallField,
    pub scope: String,
    pub month: String,
    #[serde(default)]
    pub amount_micros: Option<i64>,
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub alert_percent: Option<u8>,
}

/// A budget as set: the answer of `PUT /v1/budgets`.
#[derive(Debug, Serialize)]
pub(crate) struct BudgetSet {
    pub scope: BudgetScope,
    pub month: Month,
    pub amount_micros: Money,
    pub alert_percent: u8,
}

/// A follow-up in a batch: the message's id, or its external id, travels in the line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FollowUp {
    /// A batch line's `call`.
    #[serde(default, rename = "call")]
    pub _call: CallField,
    #[serde(default)]
    pub message_id: Option<u64>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
}

/// The `call` of a line of `POST /v1/batch`. The line is read twice: for its call, then as
/// that call's own type (which takes and ignores `call`), which is faster than serde's tagged
/// enums, which copy every line into an intermediate tree first.
#[derive(Debug, Deserialize)]
pub(crate) struct CallName<'a> {
    #[serde(borrow)]
    pub call: std::borrow::Cow<'a, str>,
}

/// The `call` field of a batch line, in the call's own type.
type CallField = Option<serde::de::IgnoredAny>;

impl FollowUp {
    /// The message the line names: by exactly one of `message_id` and `external_id`.
    pub fn message(&mut self) -> Result<MessageRef, ApiError> {
        match (self.message_id, self.external_id.take()) {
            (Some(id), None) => Ok(MessageRef::from(id)),
            (None, Some(external_id)) => Ok(MessageRef::External(external_id)),
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "give message_id or external_id, not both",
            )),
            (None, None) => Err(ApiError::invalid(
                "missing field `message_id` (or `external_id`)",
            )),
        }
    }
}

/// Which follow-up a message event is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Delivered,
    Opened,
    Failed,
    Action,
}

/// The body as `T`; a value of the wrong type or out of range is named by its field.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    // Every body and batch line is an object: serde would also read an array into a struct,
    // its fields by position, so that no field's name were ever checked.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid(
            "bad JSON: expected an object {\"field\": value, …}, found an array",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        // Read again, tracking the path, only to name the field (rare: a bad request).
        let mut json = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, T>(&mut json) {
            Err(located) if located.inner().is_data() && located.path().to_string() != "." => {
                ApiError::invalid(format!("invalid {}: {}", located.path(), located.inner()))
            }
            _ => ApiError::invalid(format!("bad JSON: {error}")),
        }
    })
}

/// A body that may be empty (follow-ups whose fields are all optional).
pub(crate) fn parse_json_or_default<'a, T: Deserialize<'a> + Default>(
    body: &'a [u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(body)
}

/// What sign a `*_micros` field may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    /// A cost.
    NotNegative,
    /// A budget.
    Positive,
    /// An outcome: negative is a loss.
    Any,
}

/// Dollars from exactly one of a `*_micros` integer and a dollars number; `None` if neither.
/// The integer's errors name its own field.
fn dollars(
    micros_field: &str,
    micros: Option<i64>,
    sign: Sign,
    dollars_field: &str,
    dollars: Option<f64>,
) -> Result<Option<f64>, ApiError> {
    match (micros, dollars) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "give {micros_field} or {dollars_field}, not both"
        ))),
        (Some(micros), None) => {
            let refused = |rule: &str| {
                Err(ApiError::invalid(format!(
                    "invalid {micros_field}: {micros} ({rule})"
                )))
            };
            match sign {
                Sign::NotNegative if micros < 0 => return refused("must not be negative"),
                Sign::Positive if micros <= 0 => return refused("must be positive"),
                _ => {}
            }
            // The library takes dollars: those that turn back into exactly these micros.
            match Money::from_micros(i128::from(micros)).exact_dollars() {
                Some(dollars) => Ok(Some(dollars)),
                None => refused(
                    "more significant digits than dollars carry exactly; every amount of at \
                     most 15 digits, within ±1000000000000000, is kept",
                ),
            }
        }
        (None, dollars) => Ok(dollars),
    }
}

/// RFC 3339; or without an offset (`2025-01-31T10:00:00`, `2025-01-31 10:00:00`), read as UTC;
/// or a date `YYYY-MM-DD`: its first millisecond, or for an `end` its last.
pub(crate) fn parse_time(
    field: &str,
    text: &str,
    edge: DayEdge,
) -> Result<DateTime<Utc>, ApiError> {
    commlog::parse_time_at(text, edge).ok_or_else(|| {
        ApiError::invalid(format!(
            "invalid {field}: {} (must be RFC 3339, e.g. 2025-01-01T09:30:00Z, or a date \
             YYYY-MM-DD)",
            quote_value(text)
        ))
    })
}

fn optional_time(field: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.map(|text| parse_time(field, text, DayEdge::Start))
        .transpose()
}

fn channel(text: &str) -> Result<Channel, ApiError> {
    text.parse().map_err(ApiError::from)
}

impl Sent {
    pub fn request(self) -> Result<Call<'static>, ApiError> {
        Ok(Call::Sent {
            user: UserId(self.user_id),
            channel: channel(&self.channel)?,
            message_type: self.message_type.into(),
            cost: dollars(
                "cost_micros",
                self.cost_micros,
                Sign::NotNegative,
                "cost",
                self.cost,
            )?
            .unwrap_or(0.0),
            sent_at: optional_time("sent_at", self.sent_at.as_deref())?,
            external_id: self.external_id.map(Into::into),
        })
    }
}

/// A follow-up of the message `message`: `name` is its reason (failed) or action (action).
pub(crate) fn follow_up(
    kind: Kind,
    message: MessageRef,
    at: Option<&str>,
    name: Option<String>,
) -> Result<Call<'static>, ApiError> {
    let at = optional_time("at", at)?;
    let named = |field: &str, name: Option<String>| {
        name.ok_or_else(|| ApiError::invalid(format!("missing field `{field}`")))
    };
    Ok(match kind {
        Kind::Delivered => Call::Delivered { message, at },
        Kind::Opened => Call::Opened { message, at },
        Kind::Failed => Call::Failed {
            message,
            reason: named("reason", name)?.into(),
            at,
        },
        Kind::Action => Call::Action {
            message,
            action: named("action", name)?.into(),
            at,
        },
    })
}

impl Outcome {
    pub fn request(self) -> Result<Call<'static>, ApiError> {
        let amount = dollars(
            "amount_micros",
            self.amount_micros,
            Sign::Any,
            "amount",
            self.amount,
        )?
        .ok_or_else(|| ApiError::invalid("missing field `amount_micros` (or `amount`)"))?;
        Ok(Call::Outcome {
            user: UserId(self.user_id),
            outcome: self.outcome.into(),
            amount,
            at: optional_time("at", self.at.as_deref())?,
        })
    }
}

impl Budget {
    /// The call, and the budget as it will be set.
    pub fn request(self) -> Result<(Call<'static>, BudgetSet), ApiError> {
        let scope: BudgetScope = self.scope.parse()?;
        let month: Month = self.month.parse()?;
        let amount = dollars(
            "amount_micros",
            self.amount_micros,
            Sign::Positive,
            "amount",
            self.amount,
        )?
        .ok_or_else(|| ApiError::invalid("missing field `amount_micros` (or `amount`)"))?;
        let set = BudgetSet {
            scope,
            month,
            amount_micros: Money::from_dollars_for("amount", amount)?,
            alert_percent: self.alert_percent.unwrap_or(90),
        };
        let request = Call::Budget {
            scope,
            month: self.month.into(),
            amount,
            alert_percent: self.alert_percent,
        };
        Ok((request, set))
    }
}

/// A view's filter from the query: for each parameter in order, its value if given, set by the
/// filter's method of the same name (`Query`'s getter and the filter's setter share the name).
macro_rules! filter {
    ($query:expr, $filter:expr, $($param:ident),+) => {{
        let mut filter = $filter;
        $(
            if let Some(value) = $query.$param()? {
                filter = filter.$param(value);
            }
        )+
        Ok(filter)
    }};
}

/// Query parameters, checked against the names a route knows, each given at most once.
pub(crate) struct Query(BTreeMap<String, String>);

impl Query {
    pub fn new(params: Vec<(String, String)>, known: &[&str]) -> Result<Query, ApiError> {
        let mut query = BTreeMap::new();
        for (name, value) in params {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {} (known: {})",
                    quote_value(&name),
                    known.join(", ")
                )));
            }
            if query.contains_key(&name) {
                return Err(ApiError::invalid(format!(
                    "query parameter {} given twice",
                    quote_value(&name)
                )));
            }
            query.insert(name, value);
        }
        Ok(Query(query))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn count(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|text| {
                text.parse::<u64>()
                    .ok()
                    .filter(|&count| count >= 1)
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "invalid {name}: {} (must be a whole number of at least 1)",
                            quote_value(text)
                        ))
                    })
            })
            .transpose()
    }

    pub fn user(&self) -> Result<Option<u64>, ApiError> {
        self.count("user")
    }

    pub fn message_type(&self) -> Result<Option<String>, ApiError> {
        Ok(self.get("type").map(str::to_owned))
    }

    pub fn channel(&self) -> Result<Option<Channel>, ApiError> {
        self.get("channel").map(channel).transpose()
    }

    pub fn start(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get("start")
            .map(|text| parse_time("start", text, DayEdge::Start))
            .transpose()
    }

    pub fn end(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get("end")
            .map(|text| parse_time("end", text, DayEdge::End))
            .transpose()
    }

    pub fn month(&self) -> Result<Option<Month>, ApiError> {
        Ok(self.get("month").map(str::parse).transpose()?)
    }

    pub fn period(&self) -> Result<Option<Period>, ApiError> {
        self.get("period")
            .map(|text| match text {
                "day" => Ok(Period::Day),
                "week" => Ok(Period::Week),
                "month" => Ok(Period::Month),
                _ => Err(ApiError::invalid(format!(
                    "invalid period: {} (must be day, week or month)",
                    quote_value(text)
                ))),
            })
            .transpose()
    }

    pub fn stats_filter(&self) -> Result<StatsFilter, ApiError> {
        filter!(
            self,
            StatsFilter::new(),
            user,
            message_type,
            channel,
            start,
            end
        )
    }

    pub fn engagement_filter(&self) -> Result<EngagementFilter, ApiError> {
        filter!(
            self,
            EngagementFilter::new(),
            message_type,
            channel,
            start,
            end
        )
    }

    pub fn effectiveness_filter(&self) -> Result<EffectivenessFilter, ApiError> {
        filter!(
            self,
            EffectivenessFilter::new(),
            user,
            message_type,
            start,
            end,
            period
        )
    }

    pub fn cost_filter(&self) -> Result<CostFilter, ApiError> {
        filter!(
            self,
            CostFilter::new(),
            user,
            message_type,
            channel,
            start,
            end,
            month
        )
    }

    pub fn impact_filter(&self) -> Result<ImpactFilter, ApiError> {
        filter!(
            self,
            ImpactFilter::new(),
            user,
            message_type,
            channel,
            start,
            end
        )
    }
}
