//! [`FreshSends`]: the sends a tick submitted, kept until its enter so the wait can
//! tell how many of their completions nobody waits for (see [`crate::submit`]).
//!
//! It holds the first [`FreshSends::CHECKED`] of them in place (no allocation) and only
//! counts that there were more: a tick that answers that many connections does not look
//! past any completion, since the next news is near anyway and checking each send
//! would cost more than the wait saves.

/// Sends submitted since the last enter: `(slot, bytes)` of the first few.
#[derive(Debug, Default)]
pub struct FreshSends {
    sends: [(u32, u64); FreshSends::CHECKED],
    len: u8,
    more: bool,
    on: bool,
}

impl FreshSends {
    /// Most sends a tick looks past.
    pub const CHECKED: usize = 4;

    /// Empty; `on` says whether the engine records sends at all (it does when its
    /// waits may look past them).
    pub fn new(on: bool) -> FreshSends {
        FreshSends { on, ..FreshSends::default() }
    }

    /// Whether sends are recorded (see [`new`](Self::new)).
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// A send of `bytes` on `slot` was submitted.
    #[inline]
    pub fn record(&mut self, slot: u32, bytes: u64) {
        match self.sends.get_mut(self.len as usize) {
            Some(s) => {
                *s = (slot, bytes);
                self.len += 1;
            }
            None => self.more = true,
        }
    }

    /// Whether no send was submitted since the last [`take_quiet`](Self::take_quiet).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many of the recorded sends `quiet` calls quiet (0 when there were more than
    /// [`CHECKED`](Self::CHECKED), without asking), and forgets them all.
    pub fn take_quiet(&mut self, mut quiet: impl FnMut(u32, u64) -> bool) -> u32 {
        let count = if self.more {
            0
        } else {
            self.sends[..self.len as usize].iter().filter(|&&(slot, bytes)| quiet(slot, bytes)).count() as u32
        };
        self.len = 0;
        self.more = false;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of ticks: each counts exactly the quiet sends it recorded, or
        /// none when it recorded more than it checks, and starts empty after.
        #[test]
        fn each_tick_counts_its_own_quiet_sends(ticks in prop::collection::vec(
            prop::collection::vec((0u32..16, 0u64..4), 0..8), 1..20))
        {
            let mut fresh = FreshSends::default();
            for sends in ticks {
                for &(slot, bytes) in &sends {
                    fresh.record(slot, bytes);
                }
                prop_assert_eq!(fresh.is_empty(), sends.is_empty());
                let quiet = |_slot: u32, bytes: u64| bytes == 0;
                let expected = if sends.len() > FreshSends::CHECKED {
                    0
                } else {
                    sends.iter().filter(|&&(s, b)| quiet(s, b)).count() as u32
                };
                let mut asked = 0;
                prop_assert_eq!(fresh.take_quiet(|s, b| { asked += 1; quiet(s, b) }), expected);
                prop_assert!(asked <= FreshSends::CHECKED);
                prop_assert!(fresh.is_empty());
            }
        }
    }
}
