//! Non-blocking, cached name resolution for upstream hosts. Pingora's `HttpPeer::new` resolves a
//! host name with a blocking call (and panics when it fails), so peers are always built from a
//! `SocketAddr` resolved here: `getaddrinfo` runs on Tokio's blocking pool, answers are cached,
//! and a stale answer is served while a refresh runs in the background.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

struct Entry {
    addrs: Arc<[SocketAddr]>,
    fetched: Instant,
}

pub struct Resolver {
    cache: RwLock<HashMap<(String, u16), Entry>>,
    /// getaddrinfo reports no TTL; this is how long an answer is used before a refresh.
    ttl: Duration,
    /// Rotates over the addresses of multi-address hosts.
    next: AtomicUsize,
}

impl Resolver {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Resolver {
            cache: RwLock::new(HashMap::new()),
            ttl,
            next: AtomicUsize::new(0),
        })
    }

    pub async fn resolve(self: &Arc<Self>, host: &str, port: u16) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let cached = self.cached(host, port);
        match cached {
            Some((addrs, fresh)) => {
                if !fresh {
                    let me = self.clone();
                    let host = host.to_string();
                    tokio::spawn(async move {
                        let _ = me.lookup(&host, port).await;
                    });
                }
                Ok(self.pick(&addrs))
            }
            None => {
                let addrs = self.lookup(host, port).await?;
                Ok(self.pick(&addrs))
            }
        }
    }

    fn cached(&self, host: &str, port: u16) -> Option<(Arc<[SocketAddr]>, bool)> {
        let cache = self.cache.read().ok()?;
        // A lookup by (&str, u16) would need a borrowed key type; hosts are few and this clone
        // is only paid on the rare names that are not IP literals.
        let e = cache.get(&(host.to_string(), port))?;
        Some((e.addrs.clone(), e.fetched.elapsed() < self.ttl))
    }

    fn pick(&self, addrs: &[SocketAddr]) -> SocketAddr {
        addrs[self.next.fetch_add(1, Ordering::Relaxed) % addrs.len()]
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Arc<[SocketAddr]>, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} resolved to no address"));
        }
        let addrs: Arc<[SocketAddr]> = addrs.into();
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(
                (host.to_string(), port),
                Entry {
                    addrs: addrs.clone(),
                    fetched: Instant::now(),
                },
            );
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_localhost() {
        let r = Resolver::new(Duration::from_secs(60));
        assert_eq!(
            r.resolve("127.0.0.1", 80).await.unwrap(),
            "127.0.0.1:80".parse::<SocketAddr>().unwrap()
        );
        let a = r.resolve("localhost", 8080).await.unwrap();
        assert!(a.ip().is_loopback());
        assert!(r.cached("localhost", 8080).is_some());
        assert!(r.resolve("no-such-host.invalid", 80).await.is_err());
    }
}
