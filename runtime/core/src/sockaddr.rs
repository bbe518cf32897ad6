//! Converting between `std::net::SocketAddr` and the kernel's `sockaddr` structs,
//! for backends that hand addresses to `connect`, `sendto`/`sendmsg` or read them
//! from `recvfrom`/`recvmsg`.
//!
//! Pure data conversion: no system call, no allocation.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// An all-zero `sockaddr_storage`.
pub fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Fills `storage` with `addr`; returns the length to pass to the kernel.
pub fn write(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>().write(sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>().write(sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// `addr` as a new `sockaddr_storage` and its length.
pub fn encode(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut storage = zeroed_storage();
    let len = write(addr, &mut storage);
    (storage, len)
}

/// Reads an IPv4 or IPv6 address the kernel wrote (`len` bytes of it); `None` for
/// other families or a short length.
pub fn read(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Reads a raw `sockaddr` from bytes (as `recvmsg` with a provided buffer lays it
/// out); `None` for other families or too few bytes.
pub fn read_bytes(bytes: &[u8]) -> Option<SocketAddr> {
    let mut storage = zeroed_storage();
    let n = bytes.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: copies n <= size_of(sockaddr_storage) bytes into the storage.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(), n)
    };
    read(&storage, n as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for addr in ["127.0.0.1:6000", "[::1]:443", "[fe80::1%3]:80"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let (storage, len) = encode(&addr);
            assert_eq!(read(&storage, len), Some(addr));
            // SAFETY: reading `len` initialised bytes of the storage.
            let bytes = unsafe {
                std::slice::from_raw_parts((&storage as *const libc::sockaddr_storage).cast::<u8>(), len as usize)
            };
            assert_eq!(read_bytes(bytes), Some(addr));
            assert_eq!(read(&storage, len - 1), None, "short length rejected");
        }
    }
}
