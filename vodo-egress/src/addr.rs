//! Which addresses a request may reach: only globally reachable unicast.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` must not be reached from a plugin or a webhook: anything
/// that is not globally reachable unicast, and every IPv6 form that embeds
/// or translates an IPv4 address.
///
/// IPv4: the IANA IPv4 special-purpose registry's non-global blocks
/// (`0/8`, `10/8`, `100.64/10`, `127/8`, `169.254/16`, `172.16/12`,
/// `192.0.0/24`, `192.0.2/24`, `192.88.99/24`, `192.168/16`, `198.18/15`,
/// `198.51.100/24`, `203.0.113/24`, `240/4`), multicast and broadcast.
///
/// IPv6: everything outside `2000::/3`, the only block IANA allocates as
/// global unicast. That covers the unspecified and loopback addresses,
/// IPv4-compatible `::a.b.c.d`, IPv4-mapped `::ffff:a.b.c.d`, SIIT
/// `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48` (marked
/// global by IANA, but they reach any IPv4 address), discard-only
/// `100::/64`, unique local `fc00::/7`, link-local `fe80::/10`, site-local
/// `fec0::/10`, multicast `ff00::/8` and SRv6 `5f00::/16`. Inside
/// `2000::/3`: the IETF protocol assignments `2001::/23` (Teredo
/// `2001::/32` embeds an IPv4 address; the rest are benchmarking, ORCHID
/// and anycast services, none of which is a server a plugin needs), the
/// documentation blocks `2001:db8::/32` and `3fff::/20`, and 6to4
/// `2002::/16`, which embeds an IPv4 address.
///
/// ```
/// use vodo_egress::is_private;
/// assert!(is_private("10.0.0.1".parse().unwrap()));
/// assert!(is_private("::ffff:0:10.0.0.1".parse().unwrap()));
/// assert!(is_private("2002:a00:1::".parse().unwrap()));
/// assert!(!is_private("2606:4700::1111".parse().unwrap()));
/// ```
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 192.88.99.0/24, 6to4 relays
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || o[0] >= 240 // 240.0.0.0/4, reserved
}

fn is_private_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    (s[0] & 0xe000) != 0x2000 // outside 2000::/3
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23, IETF protocol assignments
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32, documentation
        || s[0] == 0x2002 // 2002::/16, 6to4
        || (s[0] & 0xfff0) == 0x3ff0 // 3fff::/20, documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(ip: &str) -> bool {
        is_private(ip.parse().unwrap_or_else(|e| unreachable!("{ip}: {e}")))
    }

    #[test]
    fn every_non_global_or_ipv4_embedding_form_is_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.88.99.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            // What the attack suite got through.
            "::10.0.0.1",
            "::127.0.0.1",
            "2002:a00:1::",
            "2002:7f00:1::1",
            "fec0::1",
            "::ffff:0:10.0.0.1",
            "::ffff:0:127.0.0.1",
            // Mapped, NAT64, Teredo, discard, SRv6, multicast, documentation.
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:93.184.216.34",
            "64:ff9b::a00:1",
            "64:ff9b::5db8:d822",
            "64:ff9b:1::a00:1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "100::1",
            "5f00::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "2001:2::1",
        ] {
            assert!(private(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_unicast_is_allowed() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450:4001:81b::200e",
            "2001:4860:4860::8888",
            "2400:cb00::1",
        ] {
            assert!(!private(ip), "{ip} is public");
        }
    }
}
