//! Fair scheduling of removals: a global cap on removals running at once, a
//! cap per account, and accounts that wait served in turn, fewest running
//! first, so one tenant's many, huge or endless removals never keep another
//! tenant's removal waiting (on a plain FIFO semaphore, tenant B once
//! waited 51 s behind tenant A's 32 removals).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::{oneshot, Notify};

use crate::serving::accounting::Account;

/// The pure scheduler: who runs next. No clock, no I/O, no locking, so its
/// fairness is unit-tested directly.
#[derive(Debug)]
pub struct Scheduler<W> {
    capacity: usize,
    per_account: usize,
    running: usize,
    accounts: HashMap<Account, Queue<W>>,
    /// Accounts with a waiter, in the order they get turns: an account goes
    /// to the back once served.
    turn: VecDeque<Account>,
}

#[derive(Debug)]
struct Queue<W> {
    running: usize,
    waiting: VecDeque<W>,
}

impl<W> Default for Queue<W> {
    fn default() -> Self {
        Queue {
            running: 0,
            waiting: VecDeque::new(),
        }
    }
}

impl<W> Scheduler<W> {
    /// `capacity` removals at once overall, `per_account` of one account.
    pub fn new(capacity: usize, per_account: usize) -> Scheduler<W> {
        let capacity = capacity.max(1);
        Scheduler {
            capacity,
            per_account: per_account.clamp(1, capacity),
            running: 0,
            accounts: HashMap::new(),
            turn: VecDeque::new(),
        }
    }

    /// Removals running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Removals of `account` running now.
    #[cfg(test)]
    pub fn running_of(&self, account: Account) -> usize {
        self.accounts.get(&account).map_or(0, |q| q.running)
    }

    /// Queue `waiter` for `account`; returns the waiters that may start now.
    pub fn enqueue(&mut self, account: Account, waiter: W) -> Vec<W> {
        let queue = self.accounts.entry(account).or_default();
        queue.waiting.push_back(waiter);
        if queue.waiting.len() == 1 {
            self.turn.push_back(account);
        }
        self.dispatch()
    }

    /// One removal of `account` ended; returns the waiters that may start.
    pub fn release(&mut self, account: Account) -> Vec<W> {
        if let Some(queue) = self.accounts.get_mut(&account) {
            if queue.running > 0 {
                queue.running -= 1;
                self.running -= 1;
            }
            if queue.running == 0 && queue.waiting.is_empty() {
                self.accounts.remove(&account);
            }
        }
        self.dispatch()
    }

    /// Take back a waiter that gave up; false when it is not waiting (it was
    /// already granted its slot).
    pub fn cancel(&mut self, account: Account, is_it: impl Fn(&W) -> bool) -> bool {
        let Some(queue) = self.accounts.get_mut(&account) else {
            return false;
        };
        let Some(at) = queue.waiting.iter().position(is_it) else {
            return false;
        };
        queue.waiting.remove(at);
        if queue.waiting.is_empty() {
            self.turn.retain(|a| *a != account);
            if queue.running == 0 {
                self.accounts.remove(&account);
            }
        }
        true
    }

    /// Every waiter, removed from the queues (at shutdown).
    pub fn take_waiters(&mut self) -> Vec<W> {
        self.turn.clear();
        let mut all = Vec::new();
        self.accounts.retain(|_, q| {
            all.extend(q.waiting.drain(..));
            q.running > 0
        });
        all
    }

    /// Fill free slots. Among accounts below their cap, the one with the
    /// fewest removals running goes first (ties: whose turn came first), so
    /// an account with nothing running starts before one running its share.
    fn dispatch(&mut self) -> Vec<W> {
        let mut granted = Vec::new();
        while self.running < self.capacity {
            let pick = self
                .turn
                .iter()
                .enumerate()
                .filter_map(|(at, a)| {
                    let running = self.accounts.get(a).map_or(0, |q| q.running);
                    (running < self.per_account).then_some((running, at))
                })
                .min();
            let Some((_, at)) = pick else { break };
            let Some(account) = self.turn.remove(at) else {
                break;
            };
            let Some(queue) = self.accounts.get_mut(&account) else {
                continue;
            };
            let Some(waiter) = queue.waiting.pop_front() else {
                continue;
            };
            queue.running += 1;
            self.running += 1;
            if !queue.waiting.is_empty() {
                self.turn.push_back(account);
            }
            granted.push(waiter);
        }
        granted
    }
}

/// The scheduler shared by connections: waiters are woken through a
/// oneshot each.
pub struct FairQueue {
    state: Mutex<State>,
    idle: Notify,
}

struct State {
    scheduler: Scheduler<Waiter>,
    closed: bool,
    next_id: u64,
}

struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

/// vmrmd is shutting down: no more removals start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A running removal's slot, given back when dropped.
#[must_use = "the slot is given back as soon as it is dropped"]
pub struct Slot<'a> {
    queue: &'a FairQueue,
    account: Account,
}

/// A waiter not yet started: if its future is dropped, it leaves the queue,
/// or gives back the slot it was granted meanwhile.
struct Pending<'a> {
    queue: &'a FairQueue,
    account: Account,
    id: u64,
    armed: bool,
}

impl FairQueue {
    pub fn new(capacity: usize, per_account: usize) -> FairQueue {
        FairQueue {
            state: Mutex::new(State {
                scheduler: Scheduler::new(capacity, per_account),
                closed: false,
                next_id: 0,
            }),
            idle: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every method: a panic elsewhere
        // while holding the lock cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a slot for the orphan sweeper, which takes turns as one
    /// more account.
    pub async fn acquire(&self) -> Result<Slot<'_>, Closed> {
        self.acquire_for(Account::SWEEPER).await
    }

    /// Wait for a slot for `account`, in fair turn.
    pub async fn acquire_for(&self, account: Account) -> Result<Slot<'_>, Closed> {
        let (pending, woken) = self.enqueue(account)?;
        let granted = woken.await.is_ok();
        pending.granted(granted)
    }

    /// [`FairQueue::acquire_for`] for a connection's own thread: blocks it
    /// until the slot is granted. Never call it on a runtime worker.
    pub fn wait_for(&self, account: Account) -> Result<Slot<'_>, Closed> {
        let (pending, woken) = self.enqueue(account)?;
        let granted = woken.blocking_recv().is_ok();
        pending.granted(granted)
    }

    /// Queue a waiter for `account`: its guard, and what wakes it.
    fn enqueue(&self, account: Account) -> Result<(Pending<'_>, oneshot::Receiver<()>), Closed> {
        let (wake, woken) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            if state.closed {
                return Err(Closed);
            }
            let id = state.next_id;
            state.next_id += 1;
            wake_all(state.scheduler.enqueue(account, Waiter { id, wake }));
            id
        };
        let pending = Pending {
            queue: self,
            account,
            id,
            armed: true,
        };
        Ok((pending, woken))
    }

    fn release(&self, account: Account) {
        let mut state = self.lock();
        wake_all(state.scheduler.release(account));
        if state.scheduler.running() == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Start nothing more; waiters are told [`Closed`].
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        // Dropping their senders wakes them with an error.
        drop(state.scheduler.take_waiters());
    }

    /// Removals running now.
    pub fn running(&self) -> usize {
        self.lock().scheduler.running()
    }

    /// Resolves once no removal runs.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }
}

fn wake_all(waiters: Vec<Waiter>) {
    for w in waiters {
        // A receiver already gone is handled by its Pending guard.
        let _ = w.wake.send(());
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.queue.release(self.account);
    }
}

impl<'a> Pending<'a> {
    /// The wait ended: with the slot, or (`granted` false) dropped from the
    /// queue by [`FairQueue::close`]. Nothing to undo either way.
    fn granted(mut self, granted: bool) -> Result<Slot<'a>, Closed> {
        self.armed = false;
        match granted {
            true => Ok(Slot {
                queue: self.queue,
                account: self.account,
            }),
            false => Err(Closed),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let id = self.id;
        let cancelled = self
            .queue
            .lock()
            .scheduler
            .cancel(self.account, |w| w.id == id);
        if !cancelled {
            // Granted while the future was being dropped: give it back.
            self.queue.release(self.account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Account = Account(1001);
    const B: Account = Account(1002);
    const C: Account = Account(1003);

    #[test]
    fn one_account_never_takes_every_slot() {
        let mut s = Scheduler::new(4, 2);
        let mut started = Vec::new();
        for i in 0..32 {
            started.extend(s.enqueue(A, ("a", i)));
        }
        assert_eq!(started.len(), 2, "A runs its share only");
        assert_eq!(s.running_of(A), 2);
        // B arrives behind A's 30 waiting removals and starts at once.
        assert_eq!(s.enqueue(B, ("b", 0)), vec![("b", 0)]);
    }

    #[test]
    fn a_waiting_account_with_nothing_running_goes_first() {
        // One slot per account and overall would be FIFO; with 3 slots and
        // a cap of 3, A could hold all of them: the fewest-running rule
        // still lets B in on the next free slot.
        let mut s = Scheduler::new(3, 3);
        for i in 0..10 {
            s.enqueue(A, ("a", i));
        }
        assert_eq!(s.running_of(A), 3);
        assert!(s.enqueue(B, ("b", 0)).is_empty(), "every slot is busy");
        assert_eq!(s.release(A), vec![("b", 0)], "B before A's 4th");
        assert_eq!(s.release(A), vec![("a", 3)]);
    }

    #[test]
    fn waiting_accounts_take_turns() {
        let mut s = Scheduler::new(1, 1);
        let mut order = Vec::new();
        order.extend(s.enqueue(A, ("a", 0)));
        for i in 1..4 {
            s.enqueue(A, ("a", i));
        }
        for i in 0..3 {
            s.enqueue(B, ("b", i));
            s.enqueue(C, ("c", i));
        }
        let of = |w: (&str, i32)| match w.0 {
            "a" => A,
            "b" => B,
            _ => C,
        };
        let mut last = ("a", 0);
        for _ in 0..9 {
            let next = s.release(of(last));
            assert_eq!(next.len(), 1);
            last = next[0];
            order.push(last);
        }
        let who: String = order.iter().map(|w| w.0).collect();
        // A queued first, so it has the first turn; then strict rotation.
        assert_eq!(who, "aabcabcabc");
    }

    #[test]
    fn slots_are_never_all_one_accounts_while_another_waits() {
        // Random-ish interleaving: after every step, if any account other
        // than A waits, A does not hold every slot.
        let mut s = Scheduler::new(4, 2);
        let accounts = [A, B, C];
        let mut running: Vec<Account> = Vec::new();
        let mut seed = 7u64;
        for step in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let pick = accounts[(seed >> 33) as usize % 3];
            let started = if (seed >> 40) % 3 == 0 && !running.is_empty() {
                let at = (seed >> 20) as usize % running.len();
                let done = running.swap_remove(at);
                s.release(done)
            } else {
                s.enqueue(pick, (pick, step))
            };
            running.extend(started.iter().map(|w| w.0));
            for a in accounts {
                assert!(s.running_of(a) <= 2);
            }
            assert!(s.running() <= 4);
            let a_holds = running.iter().filter(|r| **r == A).count();
            assert!(a_holds < 4);
            assert_eq!(running.len(), s.running());
            // Work-conserving: a free slot never sits idle while an
            // account below its cap waits.
            if s.running() < 4 {
                for q in s.accounts.values() {
                    assert!(q.waiting.is_empty() || q.running >= 2, "idle slot");
                }
            }
        }
    }

    #[test]
    fn cancel_leaves_the_queue_and_close_takes_everyone() {
        let mut s = Scheduler::new(1, 1);
        s.enqueue(A, 0);
        s.enqueue(B, 1);
        s.enqueue(C, 2);
        assert!(s.cancel(B, |w| *w == 1));
        assert!(!s.cancel(A, |w| *w == 0), "already running");
        assert_eq!(s.release(A), vec![2]);
        s.enqueue(A, 3);
        assert_eq!(s.take_waiters(), vec![3]);
        assert_eq!(s.running(), 1);
    }

    #[tokio::test]
    async fn a_waiter_dropped_before_or_after_its_grant_leaks_no_slot() {
        let short = std::time::Duration::from_millis(10);
        let q = FairQueue::new(1, 1);
        // Dropped while waiting: leaves the queue.
        let first = q.acquire_for(A).await.unwrap();
        {
            let waiting = q.acquire_for(B);
            tokio::pin!(waiting);
            assert!(tokio::time::timeout(short, waiting.as_mut()).await.is_err());
        }
        drop(first);
        assert_eq!(q.running(), 0, "nothing granted to a waiter that left");
        // Granted, then dropped before it ran: the slot comes back.
        let first = q.acquire_for(A).await.unwrap();
        {
            let waiting = q.acquire_for(B);
            tokio::pin!(waiting);
            assert!(tokio::time::timeout(short, waiting.as_mut()).await.is_err());
            drop(first);
            assert_eq!(q.running(), 1, "granted to B");
        }
        assert_eq!(q.running(), 0, "B's unclaimed slot given back");
        let _again = q.acquire_for(C).await.unwrap();
    }

    #[tokio::test]
    async fn async_queue_grants_in_turn_and_gives_back_on_drop() {
        let q = FairQueue::new(1, 1);
        let first = q.acquire_for(A).await.unwrap();
        let waiting = q.acquire_for(B);
        tokio::pin!(waiting);
        let pending = tokio::time::timeout(std::time::Duration::from_millis(10), waiting.as_mut());
        assert!(pending.await.is_err(), "B waits while A holds the one slot");
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(q.running(), 1);
        drop(second);
        q.idle().await;
        q.close();
        assert_eq!(q.acquire_for(A).await.err(), Some(Closed));
    }

    /// Connection threads wait with `wait_for`: woken in fair turn when a
    /// slot frees, and told `Closed` when vmrmd shuts down meanwhile.
    #[test]
    fn a_blocked_thread_is_granted_in_turn_and_released_by_close() {
        use std::sync::mpsc;
        use std::time::Duration;

        let q = FairQueue::new(1, 1);
        let first = q.wait_for(A).unwrap();
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            s.spawn(|| {
                let tx = tx;
                let slot = q.wait_for(B);
                tx.send(slot.is_ok()).unwrap();
            });
            let waiting = Duration::from_millis(50);
            assert!(rx.recv_timeout(waiting).is_err(), "B waits while A runs");
            drop(first);
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        });
        assert_eq!(q.running(), 0, "B's slot given back when its thread ended");

        let held = q.wait_for(A).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| q.wait_for(C).err());
            while !q.lock().scheduler.accounts.contains_key(&C) {
                std::thread::yield_now();
            }
            q.close();
            assert_eq!(waiter.join().unwrap(), Some(Closed));
        });
        drop(held);
        assert_eq!(q.running(), 0);
    }
}
