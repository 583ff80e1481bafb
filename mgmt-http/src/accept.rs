//! Accepting forever with bounded connections: the TCP side shared by the HTTP [`Endpoint`](crate::Endpoint)
//! and the mapper's DNS over TCP. What is spoken on a connection is the caller's: [`Listener::serve`] hands
//! each accepted `tokio::net::TcpStream` to a function whose future serves it on the serving thread.
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often `tick` is called at least.
pub const TICK: Duration = Duration::from_millis(100);
/// After an accept error, the next try waits this long.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What a [`Listener`] counts, for the owner's metrics.
#[derive(Default, Debug)]
pub struct Counters {
    /// Accepts that failed (EMFILE and the like); each is retried after [`ACCEPT_RETRY`].
    pub accept_errors: AtomicU64,
    /// Connections accepted within the bound and handed to the serving function.
    pub served: AtomicU64,
    /// Connections closed at once because the most allowed were open.
    pub refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections ended because a write made no progress for too long (see [`Stalls`](crate::Stalls)).
    pub stalled: AtomicU64,
}

/// A bound, listening TCP socket and the single-threaded runtime that will serve it; it serves once
/// [`Listener::serve`] is called (connections that come before wait in the kernel's queue).
pub struct Listener {
    listener: std::net::TcpListener,
    rt: tokio::runtime::Runtime,
    counters: Arc<Counters>,
}

impl Listener {
    /// Binds `addr` and makes the runtime that will serve it: every error a start can meet is met here.
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Listener {
            listener,
            rt,
            counters: Arc::default(),
        })
    }

    /// The listener's counters, to be read while it serves.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The address bound (port 0 picks one).
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Accepts on this thread until `tick` (called at least every [`TICK`]) returns false, and returns once
    /// every connection is closed.
    ///
    /// - An accept error (EMFILE when every file descriptor the process may open is taken, ENFILE, ENOBUFS)
    ///   is counted in [`Counters::accept_errors`], logged once (with `name`) until accepting works again,
    ///   and retried [`ACCEPT_RETRY`] later: the connection that could not be accepted stays queued, so
    ///   trying again at once would only fail again at once.
    /// - At most `connections` are open at once; one more is accepted and closed at once (the client sees
    ///   the connection end) and counted in [`Counters::refused`].
    /// - Each other connection is counted in [`Counters::served`] and [`Counters::open`] and served by the
    ///   future `serve` makes of it, a task of its own on this thread (`spawn_local`): `serve` and its
    ///   futures need not be `Send`. When this returns, the futures of the connections still open have been
    ///   dropped: nothing they hold is used after.
    pub fn serve<F, Fut>(self, name: &str, connections: usize, mut tick: impl FnMut() -> bool, mut serve: F)
    where
        F: FnMut(tokio::net::TcpStream) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let Listener { listener, rt, counters } = self;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    log::error!("{name}: cannot serve: {e}");
                    return;
                }
            };
            let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let mut last_tick = Instant::now();
            let mut failing = false;
            while tick_due(&mut last_tick, &mut tick) {
                let Ok(accepted) = tokio::time::timeout(TICK, listener.accept()).await else {
                    continue;
                };
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        counters.accept_errors.fetch_add(1, Relaxed);
                        if !failing {
                            log::warn!("{name} {at}: accepting failed ({e}); trying again every 100 ms");
                            failing = true;
                        }
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                };
                if std::mem::take(&mut failing) {
                    log::warn!("{name} {at}: accepting again");
                }
                if counters.open.load(Relaxed) >= connections as u64 {
                    counters.refused.fetch_add(1, Relaxed);
                    drop(stream);
                    continue;
                }
                counters.served.fetch_add(1, Relaxed);
                counters.open.fetch_add(1, Relaxed);
                let (open, conn) = (Open(counters.clone()), serve(stream));
                tokio::task::spawn_local(async move {
                    // Counted down also when the task is dropped unfinished (at the end of `serve`).
                    let _open = open;
                    conn.await;
                });
            }
        });
        // Dropping the set drops every connection's task: nothing is served from here on.
        drop(local);
    }
}

/// Counts a connection down when dropped.
struct Open(Arc<Counters>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// Calls `tick` if [`TICK`] has passed since the last call; false once it said stop.
fn tick_due(last: &mut Instant, tick: &mut impl FnMut() -> bool) -> bool {
    if last.elapsed() < TICK {
        return true;
    }
    *last = Instant::now();
    tick()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{closed_within, eventually};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn one_connection_over_the_bound_is_closed_at_once_and_counted() {
        // An echo server allowing two connections.
        let l = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (addr, counters) = (l.addr(), l.counters());
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            l.serve(
                "echo",
                2,
                move || !s.load(SeqCst),
                |mut stream| async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                },
            )
        });
        let echoes = |s: &mut TcpStream| {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"hi").unwrap();
            let mut got = [0u8; 2];
            s.read_exact(&mut got).is_ok() && &got == b"hi"
        };
        let mut two: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for s in &mut two {
            assert!(echoes(s), "a connection within the bound is served");
        }
        assert_eq!(counters.open.load(Relaxed), 2);
        let mut third = TcpStream::connect(addr).unwrap();
        assert!(closed_within(&mut third, Duration::from_secs(5)), "the third is closed");
        assert_eq!(counters.refused.load(Relaxed), 1);
        assert_eq!(counters.served.load(Relaxed), 2);
        assert_eq!(counters.accept_errors.load(Relaxed), 0);
        // A place freed is taken again.
        drop(two.pop());
        assert!(eventually(|| counters.open.load(Relaxed) == 1), "counted down");
        let mut again = TcpStream::connect(addr).unwrap();
        assert!(echoes(&mut again));
        assert_eq!(counters.served.load(Relaxed), 3);
        // Stopping drops the connections still open.
        stop.store(true, SeqCst);
        t.join().unwrap();
        assert_eq!(counters.open.load(Relaxed), 0);
        assert!(closed_within(&mut again, Duration::from_secs(5)));
    }
}
