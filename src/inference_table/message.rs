//! What goes through a table's queue, from the request path (or the
//! feedback API) to its writers.

/// Answered by the writer once the rows of a [`Message::Acked`] are in the
/// open file and its journal (`true`), or were dropped by a failed write.
pub(super) type Ack = tokio::sync::oneshot::Sender<bool>;

pub(super) enum Message<R> {
    /// One row; the sender does not wait for it.
    Row(Box<R>),
    /// Rows whose sender waits until they are written.
    Acked(Vec<R>, Ack),
    /// Sent by [`Table::close`](super::table::Table::close) after it sets
    /// the writers' `closing` flag: ends the drain of the writer that reads
    /// it at once (the others see the flag after their next drain).
    Close,
}
