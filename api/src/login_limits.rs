//! Limits on the account forms (docs/identity.md "Accounts"): the failed-login lockout per email (its state is in
//! Postgres, `jhe_catalog::record_login_failure`, so replicas share it) and a per-client-IP budget for the login,
//! signup and password forms' POSTs (in this process: a GCRA token bucket per address, `governor`).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use jhe_catalog::LockoutPolicy;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Above this many tracked addresses, idle ones are dropped before the next check (bounds the memory a flood of
/// spoofed or rotating addresses can take).
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// An address range whose `X-Forwarded-For` is believed (`JHE_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// `10.0.0.0/8`, `::1`, `192.168.1.7`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| format!("`{text}` is not an IP address or range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => match prefix.parse::<u8>() {
                Ok(prefix) if prefix <= max => prefix,
                _ => return Err(format!("`{text}`: the prefix length must be 0 to {max}")),
            },
        };
        Ok(TrustedProxy { network, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 clients) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

/// The key an address is limited under: IPv4 addresses one by one, IPv6 by /64 (one subscriber's allocation;
/// otherwise a single client would have 2^64 budgets).
fn limit_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

/// The account forms' limits; cheap to clone (the per-IP state is shared).
#[derive(Clone)]
pub struct LoginLimits {
    /// failed logins per email: `JHE_LOGIN_MAX_FAILURES` (5) within `JHE_LOGIN_FAILURE_WINDOW_SECONDS` (900)
    /// lock the email for `JHE_LOGIN_LOCKOUT_SECONDS` (900)
    pub lockout: LockoutPolicy,
    /// POSTs per minute per client address (`JHE_ACCOUNT_RATE_LIMIT_PER_MINUTE`, 20; `None` = no limit)
    per_ip: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    /// `JHE_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client
    trusted_proxies: Arc<[TrustedProxy]>,
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimits")
            .field("lockout", &self.lockout)
            .field("per_ip", &self.per_ip.is_some())
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits::new(default_lockout(), 20, Vec::new())
    }
}

/// 5 failures within 15 minutes lock an email for 15 minutes.
pub fn default_lockout() -> LockoutPolicy {
    LockoutPolicy { max_failures: 5, window: chrono::Duration::minutes(15), lockout: chrono::Duration::minutes(15) }
}

fn number_from_env(name: &str, default: i64, min: i64) -> i64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(value) if value >= min && value <= i64::from(i32::MAX) => value,
            _ => {
                tracing::error!(variable = name, value = %text, default, "not an acceptable number; using the default");
                default
            }
        },
    }
}

impl LoginLimits {
    /// `per_ip_per_minute` 0 turns the per-address limit off.
    pub fn new(lockout: LockoutPolicy, per_ip_per_minute: u32, trusted_proxies: Vec<TrustedProxy>) -> Self {
        let per_ip = NonZeroU32::new(per_ip_per_minute)
            .map(|per_minute| Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute))));
        LoginLimits { lockout, per_ip, trusted_proxies: trusted_proxies.into() }
    }

    /// The limits the environment sets (see the field docs); a bad value is logged and its default used.
    pub fn from_env() -> Self {
        let lockout = LockoutPolicy {
            max_failures: number_from_env("JHE_LOGIN_MAX_FAILURES", 5, 1) as i32,
            window: chrono::Duration::seconds(number_from_env("JHE_LOGIN_FAILURE_WINDOW_SECONDS", 900, 1)),
            lockout: chrono::Duration::seconds(number_from_env("JHE_LOGIN_LOCKOUT_SECONDS", 900, 1)),
        };
        let per_minute = number_from_env("JHE_ACCOUNT_RATE_LIMIT_PER_MINUTE", 20, 0) as u32;
        let mut proxies = Vec::new();
        for entry in std::env::var("JHE_TRUSTED_PROXIES").unwrap_or_default().split(',') {
            if entry.trim().is_empty() {
                continue;
            }
            match TrustedProxy::parse(entry) {
                Ok(proxy) => proxies.push(proxy),
                Err(error) => tracing::error!(variable = "JHE_TRUSTED_PROXIES", %error, "ignored"),
            }
        }
        LoginLimits::new(lockout, per_minute, proxies)
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the rightmost `X-Forwarded-For`
    /// address that is not itself a trusted proxy (the leftmost entries are whatever the client sent).
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &axum::http::HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?.ip());
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|hop| hop.trim().parse::<IpAddr>().map(canonical))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        Some(forwarded.into_iter().rev().find(|hop| !self.is_trusted(*hop)).unwrap_or(peer))
    }

    /// Whether the TCP peer is a trusted proxy, whose `X-Forwarded-*` headers are believed.
    pub fn peer_is_trusted_proxy(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|peer| self.is_trusted(canonical(peer.ip())))
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|proxy| proxy.contains(address))
    }

    /// Takes one POST from the client's budget; `Err(wait)` when it is spent. Requests without a known address
    /// (not served over TCP) are not limited.
    pub fn check_ip(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let (Some(limiter), Some(client)) = (&self.per_ip, client) else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED_ADDRESSES {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&limit_key(client))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(text.parse().unwrap(), 40000))
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.1.2.3"));
        let open = LoginLimits::new(default_lockout(), 20, Vec::new());
        assert_eq!(open.client_ip(peer("10.0.0.1"), &headers), Some("10.0.0.1".parse().unwrap()));
        let behind = LoginLimits::new(default_lockout(), 20, vec![TrustedProxy::parse("10.0.0.0/8").unwrap()]);
        // the rightmost address the trusted proxies did not add is the client; what it sent itself is ignored
        assert_eq!(behind.client_ip(peer("10.0.0.1"), &headers), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(behind.client_ip(peer("192.0.2.1"), &headers), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(behind.client_ip(peer("::ffff:10.0.0.1"), &HeaderMap::new()), Some("10.0.0.1".parse().unwrap()));
        assert!(TrustedProxy::parse("10.0.0.0/33").is_err() && TrustedProxy::parse("proxy").is_err());
        assert!(TrustedProxy::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn each_address_has_its_budget_and_ipv6_counts_per_64() {
        let limits = LoginLimits::new(default_lockout(), 2, Vec::new());
        let a = Some("192.0.2.1".parse().unwrap());
        assert!(limits.check_ip(a).is_ok() && limits.check_ip(a).is_ok());
        let wait = limits.check_ip(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(limits.check_ip(Some("192.0.2.2".parse().unwrap())).is_ok());
        let v6 = |text: &str| Some(text.parse().unwrap());
        assert!(limits.check_ip(v6("2001:db8::1")).is_ok() && limits.check_ip(v6("2001:db8::2")).is_ok());
        assert!(limits.check_ip(v6("2001:db8::3")).is_err());
        assert!(limits.check_ip(v6("2001:db8:0:1::1")).is_ok());
        assert!(limits.check_ip(None).is_ok());
        assert!(LoginLimits::new(default_lockout(), 0, Vec::new()).check_ip(a).is_ok());
    }
}
