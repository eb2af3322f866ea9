//! The DPoP replay store: an unbounded in-process map, until the bounded and Redis stores.
use std::time::Duration;
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("unavailable")]
    Unavailable,
}
pub struct ReplayStore(std::sync::Mutex<std::collections::HashMap<[u8; 32], u64>>);
impl ReplayStore {
    pub fn memory(_max: usize) -> ReplayStore {
        ReplayStore(Default::default())
    }
    pub fn redis(_url: &str, _t: Duration, _p: &str) -> Result<ReplayStore, String> {
        Ok(Self::memory(1))
    }
    pub async fn first_use(
        &self,
        key: &[u8; 32],
        ttl: Duration,
        now_ms: u64,
    ) -> Result<bool, ReplayError> {
        let mut m = self.0.lock().unwrap();
        m.retain(|_, e| *e > now_ms);
        Ok(m.insert(*key, now_ms + ttl.as_millis() as u64).is_none())
    }
    pub fn reachable(&self) -> bool {
        true
    }
    pub fn describe(&self) -> String {
        "memory".into()
    }
}
