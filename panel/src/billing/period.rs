//! Billing periods, anchored on the order date with month-end clamping.
//!
//! Period k is `[anchor + k·m months, anchor + (k+1)·m months)`, always computed from the
//! anchor: an order on 31 January renews on 28/29 February, then 31 March (not 28 March).
//! The database computes the same with `period_start()` (see the billing migration); a test
//! checks the two agree.

use crate::plans::BillingCycle;
use chrono::{Months, NaiveDate};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: NaiveDate,
    /// Exclusive: the start of the next period.
    pub end: NaiveDate,
}

/// The start of period `k`.
/// The last day a period includes. Periods are stored half-open, `[start, end)`; people (the
/// invoice, its page, its mail) read the last day included: this is the one place that says so.
pub fn last_day(end: NaiveDate) -> NaiveDate {
    end.pred_opt().unwrap_or(end)
}

pub fn period_start(anchor: NaiveDate, cycle: BillingCycle, k: u32) -> NaiveDate {
    anchor.checked_add_months(Months::new(k * cycle.months())).expect("billing dates stay far inside chrono's range")
}

pub fn period(anchor: NaiveDate, cycle: BillingCycle, k: u32) -> Period {
    Period { start: period_start(anchor, cycle, k), end: period_start(anchor, cycle, k + 1) }
}

impl Period {
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn month_end_clamping_follows_the_anchor() {
        let a = d("2026-01-31");
        let starts: Vec<_> = (0..5).map(|k| period_start(a, BillingCycle::Monthly, k)).collect();
        assert_eq!(starts, vec![d("2026-01-31"), d("2026-02-28"), d("2026-03-31"), d("2026-04-30"), d("2026-05-31")]);
        // Leap year.
        assert_eq!(period_start(d("2028-01-31"), BillingCycle::Monthly, 1), d("2028-02-29"));
        assert_eq!(period_start(d("2028-02-29"), BillingCycle::Annual, 1), d("2029-02-28"));
        assert_eq!(period_start(d("2028-02-29"), BillingCycle::Annual, 4), d("2032-02-29"));
        assert_eq!(period(d("2026-11-30"), BillingCycle::Quarterly, 0).end, d("2027-02-28"));
        assert_eq!(period(d("2026-01-31"), BillingCycle::Monthly, 1).days(), 31);
    }
}
