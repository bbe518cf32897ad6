//! `flag_bits!`: yes/no facts of a per-fd or per-token entry packed as bits of one
//! `u8` field, each with a constant, a getter and a setter, so that an entry kept
//! per connection stays a few bytes. Declares code only; owns no state.

/// Declares flags stored in `$ty`'s `u8` field `$field`: per flag, a bit constant,
/// a getter and a setter.
macro_rules! flag_bits {
    (impl $ty:ident . $field:ident { $($(#[$doc:meta])* $bit:ident = $value:expr, $get:ident, $set:ident;)* }) => {
        impl $ty {
            $(
                $(#[$doc])*
                const $bit: u8 = $value;

                #[inline]
                fn $get(&self) -> bool {
                    self.$field & Self::$bit != 0
                }

                // Not every flag is set by name (some come with a whole new entry).
                #[allow(dead_code)]
                #[inline]
                fn $set(&mut self, on: bool) {
                    if on {
                        self.$field |= Self::$bit;
                    } else {
                        self.$field &= !Self::$bit;
                    }
                }
            )*
        }
    };
}
