//! [`wait_millis`]: a tick's wait limit as the millisecond timeout `poll(2)` and
//! `epoll_wait(2)` take. Pure arithmetic; it makes no system call.

use std::time::Duration;

/// The timeout argument of `poll(2)` / `epoll_wait(2)` for a wait of at most
/// `limit`: -1 (no limit) for `None`, else milliseconds rounded up (a wait never
/// ends before its limit), at most `i32::MAX`. It runs on every tick, so it stays
/// in 64-bit arithmetic (`Duration::as_millis` divides a `u128`: dozens of
/// instructions).
#[inline]
pub fn wait_millis(limit: Option<Duration>) -> i32 {
    let Some(t) = limit else { return -1 };
    let ms = t.as_secs().saturating_mul(1000).saturating_add(u64::from(t.subsec_nanos().div_ceil(1_000_000)));
    ms.min(i32::MAX as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_milliseconds_and_none_is_forever() {
        assert_eq!(wait_millis(None), -1);
        assert_eq!(wait_millis(Some(Duration::ZERO)), 0);
        assert_eq!(wait_millis(Some(Duration::from_nanos(1))), 1, "a wait never ends early");
        assert_eq!(wait_millis(Some(Duration::from_millis(1))), 1);
        assert_eq!(wait_millis(Some(Duration::from_micros(1_500))), 2);
        assert_eq!(wait_millis(Some(Duration::from_secs(3) + Duration::from_nanos(999_999_999))), 4000);
        assert_eq!(wait_millis(Some(Duration::from_secs(u64::MAX))), i32::MAX);
        assert_eq!(wait_millis(Some(Duration::from_millis(i32::MAX as u64 + 5))), i32::MAX);
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_u128_formula(secs in 0u64..5_000_000, nanos in 0u32..1_000_000_000) {
            let t = Duration::new(secs, nanos);
            let want = t.as_millis().min(i32::MAX as u128) as i32
                + i32::from(t.subsec_nanos() % 1_000_000 != 0 && t.as_millis() < i32::MAX as u128);
            proptest::prop_assert_eq!(wait_millis(Some(t)), want);
        }
    }
}
