//! Reading the store's reports in a test.

use commlog::{BudgetScope, BudgetStatus, CostReport, Month};

/// The status of the budget of `scope` for `month` (`YYYY-MM`) in the report; panics, showing
/// the report's budgets, when it has none.
pub fn budget_of(report: &CostReport, scope: BudgetScope, month: &str) -> BudgetStatus {
    let month: Month = month.parse().unwrap();
    report
        .budgets
        .iter()
        .find(|status| status.scope == scope && status.month == month)
        .cloned()
        .unwrap_or_else(|| panic!("no {scope} budget for {month} in {:?}", report.budgets))
}
