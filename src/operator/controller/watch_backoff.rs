//! Backoff of the controller's watches, bounded for recovery after an API server restart.
//!
//! kube's `default_backoff` waits 0.8 s doubling to 30 s (with jitter) after every error,
//! including a 410 Gone (the watch's resource version was compacted away, which an API
//! server restart often causes): the watcher has already decided to LIST again, and waits for
//! nothing. And the controller adds its own trigger backoff on top, over every watch at once.
//! Here: a 410 re-lists at once (a second 410 in a row backs off, so that a server answering
//! only 410 is not hammered); other errors wait [`FIRST`] doubling to [`MAX`]; any success
//! resets the backoff. The controller's trigger backoff is [`NoDelay`]: each watch already
//! waited.

use futures::{Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use std::time::Duration;

/// Wait after the first error.
pub const FIRST: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
pub const MAX: Duration = Duration::from_secs(10);

/// Whether `e` says the watch's resource version is gone (HTTP 410): the watcher lists again.
pub fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// The backoff state of one watch (pure: the stream adapter sleeps).
#[derive(Debug, Default, Clone)]
pub struct WatchBackoff {
    errors_in_a_row: u32,
}

impl WatchBackoff {
    /// How long to wait after `outcome` before polling the watch again.
    pub fn after(&mut self, outcome: Result<(), &watcher::Error>) -> Duration {
        let Err(e) = outcome else {
            self.errors_in_a_row = 0;
            return Duration::ZERO;
        };
        self.errors_in_a_row = self.errors_in_a_row.saturating_add(1);
        if is_gone(e) && self.errors_in_a_row == 1 {
            return Duration::ZERO;
        }
        let exp = self.errors_in_a_row.saturating_sub(1).min(16);
        FIRST.saturating_mul(1 << exp).min(MAX)
    }
}

/// `watch` with [`WatchBackoff`]: after an error, the next poll of the watch waits.
pub fn bounded<S, K>(watch: S) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut policy = WatchBackoff::default();
    watch.then(move |item| {
        let wait = policy.after(item.as_ref().map(|_| ()));
        async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            item
        }
    })
}

/// A backoff that never waits: the controller's trigger backoff when every watch backs off
/// by itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDelay;

impl Iterator for NoDelay {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for NoDelay {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn gone() -> watcher::Error {
        let mut s = Status::failure("too old resource version", "Expired");
        s.code = 410;
        watcher::Error::WatchError(Box::new(s))
    }

    fn down() -> watcher::Error {
        let mut s = Status::failure("etcdserver: leader changed", "InternalError");
        s.code = 503;
        watcher::Error::InitialListFailed(kube::Error::Api(s.boxed()))
    }

    #[test]
    fn gone_relists_at_once_errors_back_off_bounded_success_resets() {
        let mut b = WatchBackoff::default();
        assert_eq!(b.after(Err(&gone())), Duration::ZERO, "410: list again now");
        // The re-list fails: the server is restarting.
        let waits: Vec<Duration> = (0..10).map(|_| b.after(Err(&down()))).collect();
        assert_eq!(waits[0], Duration::from_millis(500));
        assert_eq!(waits[1], Duration::from_secs(1));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), MAX, "bounded");
        // Back: one success resets everything.
        assert_eq!(b.after(Ok(())), Duration::ZERO);
        assert_eq!(b.after(Err(&down())), FIRST);
        assert_eq!(b.after(Ok(())), Duration::ZERO);
        assert_eq!(b.after(Err(&gone())), Duration::ZERO);
        // 410 again without a success in between: backs off (no busy loop).
        assert_eq!(b.after(Err(&gone())), FIRST * 2);
        assert!(!is_gone(&down()) && is_gone(&gone()));
    }

    /// The adapter sleeps the policy's waits (virtual time) before it hands on an error, so
    /// the watch is polled again only after them.
    #[tokio::test(start_paused = true)]
    async fn the_stream_waits_only_after_errors_other_than_a_first_410() {
        type Item = Result<watcher::Event<()>, watcher::Error>;
        let items: Vec<Item> = vec![
            Err(gone()),
            Err(down()),
            Err(down()),
            Ok(watcher::Event::Init),
            Err(down()),
        ];
        let start = tokio::time::Instant::now();
        let mut s = Box::pin(bounded(futures::stream::iter(items)));
        let mut at = vec![];
        while let Some(_item) = s.next().await {
            at.push(start.elapsed());
        }
        let ms: Vec<u128> = at.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 500, 1500, 1500, 1750]);
    }
}
