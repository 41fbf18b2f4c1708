//! The table of live sessions, keyed by Engine.IO sid.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use crate::sid::Sid;

const SHARDS: usize = 32;

type Shard<T> = RwLock<HashMap<Sid, Arc<T>>>;

/// A map split into shards so that sessions opening and closing on different threads rarely meet on one
/// lock. A std `RwLock` is enough because no lock is ever held across an `.await`.
pub(crate) struct Registry<T> {
    shards: Box<[Shard<T>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl<T> Registry<T> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn shard(&self, sid: &Sid) -> &Shard<T> {
        &self.shards[(self.hasher.hash_one(sid) as usize) % SHARDS]
    }

    pub(crate) fn insert(&self, sid: Sid, value: Arc<T>) {
        write(self.shard(&sid)).insert(sid, value);
    }

    pub(crate) fn get(&self, sid: &Sid) -> Option<Arc<T>> {
        read(self.shard(sid)).get(sid).cloned()
    }

    /// Removes a session; `None` when it was already gone, which makes removal the "first one wins" gate
    /// of closing a session.
    pub(crate) fn remove(&self, sid: &Sid) -> Option<Arc<T>> {
        let mut shard = write(self.shard(sid));
        let removed = shard.remove(sid);
        // A burst of connections can leave a shard's table large; give the memory back once it's mostly empty.
        if shard.capacity() > 64 && shard.len() < shard.capacity() / 8 {
            shard.shrink_to_fit();
        }
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    /// A snapshot of every value, taken shard by shard.
    pub(crate) fn values(&self) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(read(shard).values().cloned());
        }
        out
    }
}

// The maps hold no invariant a panicking holder could break, so a poisoned lock is simply used again.
fn read<V>(lock: &RwLock<V>) -> std::sync::RwLockReadGuard<'_, V> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<V>(lock: &RwLock<V>) -> std::sync::RwLockWriteGuard<'_, V> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
