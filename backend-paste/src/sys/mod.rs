//! The netmap v14 + PASTE kernel ABI, written out by hand (docs/paste-abi.md §1–§3).
//!
//! Owns everything that must match the kernel bit for bit: struct layouts
//! ([`abi`]), ioctl numbers and calls ([`ioctl`]), `slot.ptr` bit-fields and ring
//! arithmetic ([`slot`]), address arithmetic over a mapped region ([`addr`]) and
//! request builders ([`request`]). It holds no state and makes no decision: the ring
//! driver and the providers build on it.

pub mod abi;
pub mod addr;
pub mod ioctl;
pub mod request;
pub mod slot;
