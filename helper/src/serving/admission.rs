//! Admission of connections: a global cap, and a cap per account (a peer
//! uid with its subordinate uids, see [`crate::serving::accounting`]) so that one
//! tenant holding idle connections cannot lock the others out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::serving::accounting::Account;

/// Hands out [`Ticket`]s within both caps.
pub struct Admission {
    global: Arc<Semaphore>,
    per_uid: Arc<Mutex<HashMap<Account, usize>>>,
    max_per_uid: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Full,
    UidFull,
}

/// A connection's place under the caps, given back when dropped.
pub struct Ticket {
    _global: OwnedSemaphorePermit,
    per_uid: Arc<Mutex<HashMap<Account, usize>>>,
    account: Account,
}

impl Admission {
    pub fn new(max_connections: usize, max_per_uid: usize) -> Admission {
        Admission {
            global: Arc::new(Semaphore::new(max_connections)),
            per_uid: Arc::new(Mutex::new(HashMap::new())),
            max_per_uid,
        }
    }

    /// Admit one more connection charged to `account`, if both caps allow.
    pub fn admit(&self, account: Account) -> Result<Ticket, Refusal> {
        let mut counts = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        let held = counts.entry(account).or_insert(0);
        if *held >= self.max_per_uid {
            return Err(Refusal::UidFull);
        }
        let permit = Arc::clone(&self.global)
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        *held += 1;
        Ok(Ticket {
            _global: permit,
            per_uid: Arc::clone(&self.per_uid),
            account,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = counts.get_mut(&self.account) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_uid_and_overall_and_gives_back_on_drop() {
        let a = Admission::new(3, 2);
        let t1 = a.admit(Account(1)).unwrap();
        let _t2 = a.admit(Account(1)).unwrap();
        assert_eq!(a.admit(Account(1)).err(), Some(Refusal::UidFull));
        let _t3 = a.admit(Account(2)).unwrap();
        assert_eq!(a.admit(Account(3)).err(), Some(Refusal::Full));
        drop(t1);
        assert!(a.admit(Account(1)).is_ok());
    }
}
