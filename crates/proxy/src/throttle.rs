//! `global-rate-limit`: requests counted in memcached, so that every replica counts together,
//! with lua-resty-global-throttle's sliding window (what ingress-nginx used until v1.12).
//!
//! For a window of `W` seconds, the counter of the current window (`floor(now / W)`) and the
//! previous one are read; the request is over the limit when the current count has reached
//! it, or when the previous window's rate over what is left of this one, plus the current
//! count, has. Otherwise the current counter is incremented (created with a lifetime of two
//! windows), and a request that finds it already at the limit is over it too. A refused
//! request is not counted.
//!
//! memcached's text protocol over one connection per check (`get`, `incr`, `add`). Any
//! failure (no connection within the connect timeout, an error, a late answer) lets the
//! request through and is logged, as ingress-nginx did: see the family's documentation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::pipeline::GlobalCheck;

/// Whether the request is over its global limit; `false` when memcached cannot say.
pub(crate) async fn limited(check: &GlobalCheck) -> bool {
    let limit = &check.limit;
    let timeout = Duration::from_millis(limit.connect_timeout_ms.max(1));
    // Connect, then up to four exchanges, each within the timeout.
    match tokio::time::timeout(timeout * 5, count(check, timeout)).await {
        Ok(Ok(over)) => over,
        Ok(Err(e)) => {
            tracing::warn!(memcached = %limit.memcached.0, error = %e, "global-rate-limit: memcached failed; request let through");
            false
        }
        Err(_) => {
            tracing::warn!(memcached = %limit.memcached.0, "global-rate-limit: memcached timed out; request let through");
            false
        }
    }
}

async fn count(check: &GlobalCheck, timeout: Duration) -> Result<bool, String> {
    let g = &check.limit;
    let (host, port) = (&g.memcached.0, g.memcached.1);
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| format!("{host}:{port}: connect timed out"))?
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut mc = Memcached { io: BufReader::new(stream) };

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
    let now = now.as_secs_f64();
    let window = g.window_secs as f64;
    let id = (now / window).floor() as u64;
    let remaining = window - now % window;
    // memcached keys are short and printable: the namespace and key, hashed.
    let digest = Md5::new().chain_update(&g.namespace).chain_update([0]).chain_update(&check.key);
    let sample = digest.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let key = |id: u64| format!("sluice-grl.{sample}.{id}");
    let limit = g.limit;

    let count = mc.get(&key(id)).await?.unwrap_or(0);
    if count >= limit {
        return Ok(true);
    }
    let last = mc.get(&key(id.saturating_sub(1))).await?.unwrap_or(0).min(limit);
    let last_rate = last as f64 / window;
    if last_rate * remaining + count as f64 >= limit as f64 {
        if last_rate == 0.0 {
            return Ok(true);
        }
        let delay = remaining - (limit - count) as f64 / last_rate;
        // lua-resty-global-throttle: no delay (or one it cannot explain) lets the request
        // through, uncounted.
        return Ok(delay > 0.0 && delay <= window);
    }
    let new = match mc.incr(&key(id)).await? {
        Some(n) => n,
        None => {
            if mc.add(&key(id), g.window_secs * 2).await? {
                1
            } else {
                mc.incr(&key(id)).await?.unwrap_or(1)
            }
        }
    };
    Ok(new > limit)
}

/// A connection speaking memcached's text protocol.
struct Memcached {
    io: BufReader<TcpStream>,
}

impl Memcached {
    async fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let n = self.io.read_line(&mut line).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("memcached closed the connection".into());
        }
        let line = line.trim_end().to_string();
        if line.starts_with("ERROR")
            || line.starts_with("CLIENT_ERROR")
            || line.starts_with("SERVER_ERROR")
        {
            return Err(format!("memcached: {line}"));
        }
        Ok(line)
    }

    async fn send(&mut self, command: &str) -> Result<(), String> {
        self.io.get_mut().write_all(command.as_bytes()).await.map_err(|e| e.to_string())
    }

    /// `get`: the counter, or `None` when there is none.
    async fn get(&mut self, key: &str) -> Result<Option<u64>, String> {
        self.send(&format!("get {key}\r\n")).await?;
        let header = self.line().await?;
        if header == "END" {
            return Ok(None);
        }
        let bytes: usize = header
            .split(' ')
            .nth(3)
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| format!("memcached: unexpected {header:?}"))?;
        let mut data = vec![0u8; bytes + 2];
        self.io.read_exact(&mut data).await.map_err(|e| e.to_string())?;
        let end = self.line().await?;
        if end != "END" {
            return Err(format!("memcached: unexpected {end:?}"));
        }
        let text = std::str::from_utf8(&data[..bytes]).map_err(|e| e.to_string())?;
        text.trim().parse().map(Some).map_err(|_| format!("memcached: {text:?} is not a count"))
    }

    /// `incr key 1`: the new count, or `None` when there is no counter.
    async fn incr(&mut self, key: &str) -> Result<Option<u64>, String> {
        self.send(&format!("incr {key} 1\r\n")).await?;
        let line = self.line().await?;
        if line == "NOT_FOUND" {
            return Ok(None);
        }
        line.parse().map(Some).map_err(|_| format!("memcached: unexpected {line:?}"))
    }

    /// `add key` with the value 1: whether it was created (another replica may have been
    /// first).
    async fn add(&mut self, key: &str, lifetime_secs: u64) -> Result<bool, String> {
        self.send(&format!("add {key} 0 {lifetime_secs} 1\r\n1\r\n")).await?;
        match self.line().await?.as_str() {
            "STORED" => Ok(true),
            "NOT_STORED" => Ok(false),
            other => Err(format!("memcached: unexpected {other:?}")),
        }
    }
}
