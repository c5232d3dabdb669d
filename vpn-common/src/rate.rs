//! The per-source token bucket of enforce mode, shared so it can be tested on the host.

use crate::maps::RateState;

/// A fresh bucket for a source seen at `now_ns`: full, minus the message being charged.
#[inline(always)]
pub const fn new_bucket(now_ns: u64, cost_ns: u64, burst_ns: u64) -> RateState {
    RateState {
        credit_ns: burst_ns.saturating_sub(cost_ns),
        last_ns: now_ns,
    }
}

/// Charges one message against the bucket. Credit grows by one per nanosecond up to
/// `burst_ns`; a message costs `cost_ns`. Returns `false` when the source is over its rate.
#[inline(always)]
pub fn take(state: &mut RateState, now_ns: u64, cost_ns: u64, burst_ns: u64) -> bool {
    let elapsed = now_ns.saturating_sub(state.last_ns);
    let mut credit = state.credit_ns.saturating_add(elapsed);
    if credit > burst_ns {
        credit = burst_ns;
    }
    state.last_ns = now_ns;
    if credit >= cost_ns {
        state.credit_ns = credit - cost_ns;
        true
    } else {
        state.credit_ns = credit;
        false
    }
}
