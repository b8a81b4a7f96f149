//! Which address of a guest to use, from its `VM_guest_metrics.networks` map.
//!
//! XAPI writes `N/ip` (legacy) and `N/ipv4/M`, and `N/ipv6/M`, where N is the VIF's device
//! number (not always 0) and a value may hold several addresses separated by spaces.
//! IPv4 comes first, the lowest device first (then `ip` before `ipv4/0`, `ipv4/1`, ...),
//! then IPv6 when allowed. Only global unicast or private addresses count: never
//! link-local (a guest reports 169.254.x.y or fe80:: before DHCP has answered), loopback,
//! unspecified, broadcast, multicast or documentation ranges. With `expected_ip_cidr`,
//! only an address inside it counts, and an explicit range may name loopback addresses
//! (a test pool whose guests live on 127.0.0.N).

use super::options::Cidr;
use serde_json::{Map, Value};
use std::net::IpAddr;

fn usable(ip: IpAddr, cidr: Option<&Cidr>) -> bool {
    if let Some(c) = cidr {
        if !c.contains(ip) {
            return false;
        }
        if ip.is_loopback() {
            return true;
        }
    }
    match ip {
        IpAddr::V4(v) => {
            !(v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_multicast()
                || v.is_documentation())
        }
        IpAddr::V6(v) => {
            let seg = v.segments();
            let link_local = seg[0] & 0xffc0 == 0xfe80;
            !(v.is_loopback() || v.is_unspecified() || v.is_multicast() || link_local)
        }
    }
}

/// (device, family 4|6, rank within the device, address) of every address in the map.
fn candidates(networks: &Map<String, Value>) -> Vec<(u32, u8, u32, IpAddr)> {
    let mut out = Vec::new();
    for (k, v) in networks {
        let parts: Vec<&str> = k.split('/').collect();
        let (dev, fam, rank) = match parts.as_slice() {
            [d, "ip"] => (d.parse::<u32>().ok(), 4, 0),
            [d, "ipv4", m] => (
                d.parse::<u32>().ok(),
                4,
                m.parse::<u32>().map_or(u32::MAX, |m| m + 1),
            ),
            [d, "ipv6", m] => (
                d.parse::<u32>().ok(),
                6,
                m.parse::<u32>().unwrap_or(u32::MAX),
            ),
            _ => (None, 0, 0),
        };
        let Some(dev) = dev else { continue };
        for a in v.as_str().unwrap_or("").split_whitespace() {
            if let Ok(ip) = a.parse::<IpAddr>() {
                if (fam == 4) == ip.is_ipv4() {
                    out.push((dev, fam, rank, ip));
                }
            }
        }
    }
    out.sort_by_key(|c| (c.1, c.0, c.2));
    out
}

/// The address to reach the guest at, if it reported one that counts.
pub fn pick(
    networks: &Map<String, Value>,
    cidr: Option<&Cidr>,
    allow_ipv6: bool,
) -> Option<IpAddr> {
    candidates(networks)
        .into_iter()
        .filter(|c| c.1 == 4 || allow_ipv6)
        .map(|c| c.3)
        .find(|ip| usable(*ip, cidr))
}

/// Every address the guest reported, for messages.
pub fn reported(networks: &Map<String, Value>) -> String {
    let all: Vec<String> = candidates(networks)
        .into_iter()
        .map(|c| c.3.to_string())
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rules() {
        // Link-local before DHCP: nothing yet.
        let n = m(json!({"0/ip": "169.254.3.4", "0/ipv4/0": "169.254.3.4", "0/ipv6/0": "fe80::1"}));
        assert_eq!(pick(&n, None, true), None);
        // The lowest device first; IPv4 before IPv6.
        let n = m(json!({"1/ip": "10.0.0.9", "0/ipv6/0": "2001:db9::1", "2/ipv4/0": "10.0.0.1"}));
        assert_eq!(pick(&n, None, true), Some("10.0.0.9".parse().unwrap()));
        // Device 1 only (as some guests report it).
        let n = m(json!({"1/ip": "192.168.1.5"}));
        assert_eq!(pick(&n, None, true), Some("192.168.1.5".parse().unwrap()));
        // Space-separated values.
        let n = m(json!({"0/ip": "169.254.1.1 172.16.0.4"}));
        assert_eq!(pick(&n, None, true), Some("172.16.0.4".parse().unwrap()));
        // IPv6 only when allowed, and never link-local.
        let n = m(json!({"0/ipv6/0": "fe80::2", "0/ipv6/1": "2a01:4f8::5"}));
        assert_eq!(pick(&n, None, true), Some("2a01:4f8::5".parse().unwrap()));
        assert_eq!(pick(&n, None, false), None);
        // The CIDR restricts, and may name loopback addresses explicitly.
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        let n = m(json!({"0/ip": "10.0.0.3", "1/ip": "10.1.2.3"}));
        assert_eq!(pick(&n, Some(&c), true), Some("10.1.2.3".parse().unwrap()));
        let n = m(json!({"0/ip": "127.0.0.12"}));
        assert_eq!(pick(&n, None, true), None);
        let lo = Cidr::parse("127.0.0.0/8").unwrap();
        assert_eq!(
            pick(&n, Some(&lo), true),
            Some("127.0.0.12".parse().unwrap())
        );
        let n = m(json!({"0/ip": "169.254.0.7"}));
        assert_eq!(
            pick(&n, Some(&Cidr::parse("169.0.0.0/8").unwrap()), true),
            None
        );
        assert_eq!(
            reported(&m(json!({"0/ip": "1.2.3.4", "x": "y"}))),
            "1.2.3.4"
        );
    }
}
