//! The outcomes as recorded: one record per `FinancialOutcome` event, in log order.

use crate::event::UserId;
use crate::message::{FinancialOutcome, time_from_ms};
use crate::money::Money;
use crate::projection::names::{NameId, Names};
use crate::projection::{Facts, Projection};

/// One outcome as its event recorded it.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct OutcomeState {
    pub user_id: u64,
    pub at_ms: i64,
    pub amount_micros: i64,
    pub outcome: NameId,
}

impl OutcomeState {
    pub(crate) fn to_outcome(&self, names: &Names) -> FinancialOutcome {
        FinancialOutcome {
            user_id: UserId(self.user_id),
            outcome: names.name(self.outcome).to_string(),
            amount: Money::from_micros(i128::from(self.amount_micros)),
            at: time_from_ms(self.at_ms),
        }
    }
}

impl Projection {
    /// The outcome at this index (in log order).
    pub(crate) fn outcome(&self, index: usize) -> Option<FinancialOutcome> {
        Some(self.outcomes.get(index)?.to_outcome(&self.names))
    }

    pub(crate) fn outcome_count(&self) -> usize {
        self.outcomes.len()
    }
}

impl Facts {
    /// Every outcome, in log order.
    pub(crate) fn outcome_states(&self) -> &[OutcomeState] {
        &self.outcomes
    }
}
