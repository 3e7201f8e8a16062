//! Admitting connections: at most `max_connections` open per listener
//! (more are closed at once), and accept failures logged at most once per
//! [`LOG_EVERY`] with a count of the ones not logged.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// At most one log line per this long for each kind of trouble.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// A pause after an accept failure that is about this process (out of file
/// descriptors or memory), so the loop does not spin while it lasts.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);

/// An accepted connection holding one of its listener's places; the place
/// is given back when this (or the stream's new owner, the permit) drops.
pub(crate) struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
}

/// One listener's door: the places left and the rate-limited logs.
pub(crate) struct Admission {
    listener: &'static str,
    max: usize,
    places: Arc<Semaphore>,
    refused: Throttled,
    failed: Throttled,
}

impl Admission {
    /// A door for `listener` ("rest" or "grpc", as in logs and metrics).
    pub(crate) fn new(listener: &'static str, max_connections: usize) -> Admission {
        let max = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            listener,
            max,
            places: Arc::new(Semaphore::new(max)),
            refused: Throttled::new(LOG_EVERY),
            failed: Throttled::new(LOG_EVERY),
        }
    }

    /// The next connection that gets a place. Connections over the limit
    /// are closed as soon as they are accepted (the client sees the close
    /// at once instead of waiting in the backlog), and counted.
    pub(crate) async fn accept(&mut self, listener: &TcpListener) -> Admitted {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match Arc::clone(&self.places).try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        return Admitted {
                            stream,
                            peer,
                            permit,
                        };
                    }
                    Err(_) => {
                        drop(stream);
                        metrics::counter!("podium_connections_refused_total", "listener" => self.listener)
                            .increment(1);
                        if let Some(more) = self.refused.note(Instant::now()) {
                            tracing::warn!(
                                "{} listener: {} connections open, refusing new ones ({more} more refused since the last message; raise --max-connections / PODIUM_MAX_CONNECTIONS)",
                                self.listener,
                                self.max
                            );
                        }
                    }
                },
                Err(e) => {
                    metrics::counter!("podium_accept_errors_total", "listener" => self.listener)
                        .increment(1);
                    if let Some(more) = self.failed.note(Instant::now()) {
                        tracing::error!(
                            "{} listener: cannot accept a connection: {e} ({more} more failures since the last message)",
                            self.listener
                        );
                    }
                    if is_resource_error(&e) {
                        tokio::time::sleep(RESOURCE_BACKOFF).await;
                    }
                }
            }
        }
    }
}

/// Failures that are about this process, not the one connection: waiting a
/// moment lets other connections close and give back their descriptors.
fn is_resource_error(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Says when a line may be logged: the first time, then at most once per
/// period, with how many were not logged in between.
#[derive(Debug)]
pub(crate) struct Throttled {
    every: Duration,
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttled {
    pub(crate) fn new(every: Duration) -> Throttled {
        Throttled {
            every,
            last: None,
            unlogged: 0,
        }
    }

    /// Notes one event at `now`: `Some(unlogged)` when it should be logged
    /// (with the number of events since the last logged one), else `None`.
    pub(crate) fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_event_then_one_per_period_with_the_count() {
        let mut log = Throttled::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(log.note(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(log.note(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(log.note(t0 + Duration::from_secs(11)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(30)), Some(1));
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_at_once() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut door = Admission::new("test", 1);
        let _first = std::net::TcpStream::connect(addr).unwrap();
        let kept = door.accept(&listener).await;
        // The second is accepted and closed while the first holds the place.
        let mut second = std::net::TcpStream::connect(addr).unwrap();
        let waiting = tokio::spawn(async move {
            let admitted = door.accept(&listener).await;
            admitted.peer
        });
        second
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::task::spawn_blocking(move || second.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "not closed: {read:?}");
        // Once the first's place is given back, the next one is admitted.
        drop(kept);
        let third = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(waiting.await.unwrap(), third.local_addr().unwrap());
    }
}
