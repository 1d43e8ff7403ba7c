//! Exactly-once delivery: how a finished event reaches the transaction that commits it. A lane
//! hands the event over, with the records its handlers emitted and the dead letters it needs, to
//! the transaction committer (`kafka_in/transactions.rs`), which writes them inside the open
//! transaction and finishes the event there; the transaction then commits them with the
//! consumed offsets. The committer takes everything in the order it was handed over, so a request
//! to commit now (a revocation) covers every event handed over before it.

use std::sync::mpsc;
use std::time::Duration;

use crate::kafka_out::outgoing::Outgoing;
use crate::pipeline::in_flight::Share;
use crate::pipeline::offsets::Ticket;

/// A finished event on its way into a transaction.
pub struct Handoff {
    /// The event's place in its partition's commit order.
    pub ticket: Ticket,
    /// A hash of its key: events of one key are written in the order they were handed over.
    pub key_hash: u64,
    /// What its handlers emitted and the dead letters it needs, in order.
    pub records: Vec<Outgoing>,
    /// Its part of the host's in-flight count and bytes, given back once it is written.
    pub share: Share,
}

/// What the committer is asked.
pub enum Request {
    /// Write a finished event into the open transaction.
    Finished(Handoff),
    /// Commit the open transaction now (a revocation); the answer says whether it committed.
    Commit(mpsc::Sender<Result<(), String>>),
    /// Commit what is open and stop (shutdown).
    Stop(mpsc::Sender<Result<(), String>>),
    /// The member lost its partitions: abort what is open and stop, for the host to start over.
    Abandon,
}

/// The lanes' (and the group callbacks') way to the committer.
#[derive(Clone)]
pub struct Transactions {
    requests: mpsc::Sender<Request>,
}

impl Transactions {
    /// A way to the committer, and the committer's end.
    pub fn channel() -> (Self, mpsc::Receiver<Request>) {
        let (requests, receiver) = mpsc::channel();
        (Self { requests }, receiver)
    }

    /// Hands a finished event over. When the committer is gone (it failed, and the host stops)
    /// the event stays unfinished: its partition's next owner handles it.
    pub fn finished(&self, handoff: Handoff) {
        let _ = self.requests.send(Request::Finished(handoff));
    }

    /// Commits the open transaction, with every event handed over before, and waits (up to
    /// `timeout`) for the result.
    pub fn commit_now(&self, timeout: Duration) -> Result<(), String> {
        self.ask(Request::Commit, timeout)
    }

    /// Tells the committer that the member lost its partitions (without waiting): it aborts the
    /// open transaction and stops, and the host starts over.
    pub fn abandon(&self) {
        let _ = self.requests.send(Request::Abandon);
    }

    /// Commits what is open and stops the committer.
    pub fn stop(&self, timeout: Duration) -> Result<(), String> {
        self.ask(Request::Stop, timeout)
    }

    fn ask(
        &self,
        request: impl FnOnce(mpsc::Sender<Result<(), String>>) -> Request,
        timeout: Duration,
    ) -> Result<(), String> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(request(reply))
            .map_err(|_| "the transaction committer has stopped".to_string())?;
        answer
            .recv_timeout(timeout)
            .map_err(|_| format!("no answer from the transaction committer within {timeout:?}"))?
    }
}
